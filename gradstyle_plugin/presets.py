"""Configuration presets of GradStyle: which stages, how wide, how deep (edm2-style named presets).

`paper` follows the paper: stages after the 16x16, 32x32 and 64x64 blocks of a 1024 generator
(its 4-stage setting), encoder features of c = 512 channels, d_k = 64. `tiny` is for the 32-64 px
generators of the tests and CPU demos. Widths are always read from the generator
(`G.synthesis.stage_channels`), never hard-coded.
"""

import copy

from stylegan2_ada_pytorch import dnnlib

#----------------------------------------------------------------------------

STAGE_CLASS_NAME = 'gradstyle_plugin.stage.GradStyleStage'

config_presets = {
    'paper': dnnlib.EasyDict(
        feature_channels    = 512,
        grm_kwargs          = dnnlib.EasyDict(hidden_channels=128, num_blocks=2),
        aligner_kwargs      = dnnlib.EasyDict(num_layers=2, head_dim=64, mu=0.5, ffn_mult=2),
        gate_kwargs         = dnnlib.EasyDict(hidden_channels=64),
    ),
    'tiny': dnnlib.EasyDict(
        feature_channels    = 32,
        grm_kwargs          = dnnlib.EasyDict(hidden_channels=32, num_blocks=1),
        aligner_kwargs      = dnnlib.EasyDict(num_layers=1, head_dim=16, mu=0.5, ffn_mult=2),
        gate_kwargs         = dnnlib.EasyDict(hidden_channels=32),
    ),
}

#----------------------------------------------------------------------------

def default_stages(img_resolution):
    """The three largest block resolutions up to 64: b16/b32/b64 for >= 64 px, b8/b16/b32 for 32 px."""
    resolutions = [2 ** i for i in range(2, int(img_resolution).bit_length()) if 2 ** i <= min(img_resolution, 64)]
    return [f'b{res}' for res in resolutions[-3:]]

def get_preset(name):
    if name not in config_presets:
        raise dnnlib.UserError(f'--preset: unknown preset {name!r} (choose from {", ".join(config_presets)})')
    return copy.deepcopy(config_presets[name])

def stage_injector_kwargs(G, preset='paper', stages=None, mu=None, feature_channels=None):
    """The `injector_kwargs` that attach GradStyle to G: {stage: [EasyDict(class_name=..., ...)]}.

    Example:
        >>> kwargs = stage_injector_kwargs(G, preset='paper', mu=0.5)
        >>> sorted(kwargs)
        ['b16', 'b32', 'b64']
    """
    cfg = get_preset(preset) if isinstance(preset, str) else copy.deepcopy(preset)
    stages = default_stages(G.img_resolution) if stages is None else list(stages)
    unknown = [s for s in stages if s not in G.synthesis.stages]
    if unknown:
        raise dnnlib.UserError(f'--stages: {", ".join(unknown)} not in this generator (stages: {", ".join(G.synthesis.stages)})')
    if mu is not None:
        if not 0 < mu <= 1:
            raise dnnlib.UserError(f'--mu: must be in (0, 1], got {mu}')
        cfg.aligner_kwargs.mu = mu
    c = cfg.feature_channels if feature_channels is None else feature_channels
    last = G.synthesis.stages[-1]
    return {stage: [dnnlib.EasyDict(class_name=STAGE_CLASS_NAME, channels=G.synthesis.stage_channels[stage],
        feature_channels=c, is_last=(stage == last), img_channels=G.img_channels,
        grm_kwargs=cfg.grm_kwargs, aligner_kwargs=cfg.aligner_kwargs, gate_kwargs=cfg.gate_kwargs)] for stage in stages}

#----------------------------------------------------------------------------
