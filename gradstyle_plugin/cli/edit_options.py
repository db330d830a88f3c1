"""Parsing of gradstyle-edit's composite-edit and per-stage-knob flags (pure functions, UserError naming the flag).

    --edit smile:2,pose:-1.5            several directions in one pass (one output image)
    --edit smile:-2:2:5,pose:-1.5       a sweep over one of them (START:STOP:COUNT, one image per value)
    --stages b16,b32                    only these GradStyle stages inject, both streams (paper Fig. 8: one low or high stage)
    --gate-scale b64=0.5,b32=0.8        f~ = f + s * g * F at these stages (ours: a continuous fidelity / editability dial)
"""

import math

from stylegan2_ada_pytorch.dnnlib import UserError

__all__ = ['parse_composite', 'composite_label', 'composite_name', 'composite_cells', 'parse_stages', 'parse_gate_scale']

#----------------------------------------------------------------------------

def parse_composite(text, parse_alphas):
    """'smile:2,pose:-1.5' -> [{'name': 'smile', 'alphas': [2.0]}, {'name': 'pose', 'alphas': [-1.5]}].

    `parse_alphas` turns one value or a sweep START:STOP:COUNT into a list (gradstyle-edit's). At
    most one direction may sweep; a direction may not repeat.
    """
    items = []
    for part in str(text).split(','):
        name, sep, value = part.strip().partition(':')
        if not sep or not name or not value:
            raise UserError(f'--edit: expected NAME:ALPHA items separated by commas (smile:2,pose:-1.5), got {text!r}')
        try:
            alphas = parse_alphas(value)
        except UserError as err:
            raise UserError(f'--edit {text}: {name}: {str(err).partition(": ")[2]}')
        items.append(dict(name=name, alphas=alphas))
    names = [item['name'].rpartition('/')[2] for item in items]
    if len(set(names)) != len(names):
        raise UserError(f'--edit {text}: a direction is given twice')
    if sum(len(item['alphas']) > 1 for item in items) > 1:
        raise UserError(f'--edit {text}: only one direction can sweep (START:STOP:COUNT); give the others one value')
    return items

def composite_label(items, alphas, alpha_label):
    """File-name label of one composite cell: 'smile_2+pose_-1.5' (`alphas` one value per item)."""
    return '+'.join(f'{item["name"].rpartition("/")[2]}_{alpha_label(a)}' for item, a in zip(items, alphas))

def composite_name(items, alpha_label):
    """Label of a whole composite (a grid row, edits.json): 'smile_-2..2+pose_-1.5' for a sweep."""
    def values(alphas):
        return alpha_label(alphas[0]) if len(alphas) == 1 else f'{alpha_label(alphas[0])}..{alpha_label(alphas[-1])}'
    return '+'.join(f'{item["name"].rpartition("/")[2]}_{values(item["alphas"])}' for item in items)

def composite_cells(items):
    """[[alpha per item]] of a composite: one list per value of its sweep (a single list when nothing sweeps)."""
    count = max(len(item['alphas']) for item in items)
    return [[item['alphas'][i] if len(item['alphas']) > 1 else item['alphas'][0] for item in items] for i in range(count)]

#----------------------------------------------------------------------------

def parse_stages(text):
    """'b16,b32' -> ['b16', 'b32'] (None stays None); names are checked against the network later."""
    if text is None:
        return None
    stages = [s.strip() for s in str(text).split(',') if s.strip()]
    if not stages or len(set(stages)) != len(stages):
        raise UserError(f'--stages: expected distinct stage names separated by commas (b16,b32), got {text!r}')
    return stages

def parse_gate_scale(text):
    """'b64=0.5,b32=0.8' -> {'b64': 0.5, 'b32': 0.8} (None stays None)."""
    if text is None:
        return None
    scales = {}
    for part in str(text).split(','):
        stage, sep, value = part.strip().partition('=')
        try:
            scale = float(value)
        except ValueError:
            scale = None
        if not sep or not stage or stage in scales or scale is None or not math.isfinite(scale):
            raise UserError(f'--gate-scale: expected STAGE=SCALE items separated by commas (b64=0.5,b32=0.8), got {text!r}')
        scales[stage] = scale
    return scales

#----------------------------------------------------------------------------
