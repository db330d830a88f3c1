"""GradStyle: Gradual Residuals Alignment for StyleGAN inversion and attribute editing.

A plugin for the toolkit in `stylegan2_ada_pytorch`: GradStyle's per-stage modules (GRM, GAM with
Selective Attention, shared Gate&Fusion) are persistent injectors attached to a loaded generator,
and the dual-stream forward runs through the toolkit's injection hooks.

    >>> import stylegan2_ada_pytorch as sg
    >>> from gradstyle_plugin import GradStyleNet, attach_gradstyle
    >>> G = attach_gradstyle(sg.load_network_pkl(open('ffhq.pkl', 'rb'))['G_ema'], preset='paper')
    >>> net = GradStyleNet.from_modules(G, encoder)
    >>> out = net(images, direction=pose, alpha=3.0)       # out.img_rec, out.img_edit

Modules: `encoder` (e4e-compatible), `grm`, `gam`, `selective_attention`, `stage`, `presets`,
`attach`, `streams`, `network`, `loss` (training objective), `train_config`, `edit`, `eval` (gradstyle-eval,
`evaluate()`), `cli`.
"""

from gradstyle_plugin.attach import attach as attach_gradstyle
from gradstyle_plugin.attach import detach_gradstyle, stage_modules
from gradstyle_plugin.network import GradStyleNet
from gradstyle_plugin.presets import config_presets, default_stages
from gradstyle_plugin.streams import StreamOutputs, run_streams

def evaluate(network, data, outdir=None, **options):
    """gradstyle-eval as a Python call, returning report.json's dict (see gradstyle_plugin/eval/evaluate.py)."""
    from gradstyle_plugin.eval.evaluate import evaluate as _evaluate
    return _evaluate(network, data, outdir=outdir, **options)

__all__ = ['evaluate', 'attach_gradstyle', 'detach_gradstyle', 'stage_modules', 'GradStyleNet', 'config_presets', 'default_stages',
    'StreamOutputs', 'run_streams']
