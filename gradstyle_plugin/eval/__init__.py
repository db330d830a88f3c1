"""`gradstyle-eval`: one pinned protocol for the paper's Tables 1-2 and the Fig. 8 ablations.

Modules: `metrics` (the definitions), `methods` (e4e, grm, gradstyle, dense, stage-low/high, no-grm,
no-gam, project), `classifier` (attribute classifier files), `scoring`, `run` (the loop, resume
state), `report` (tables, report.md, plot), `config`, `evaluate` (the Python API).
"""
