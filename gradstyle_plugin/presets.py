"""Configuration presets of GradStyle: which stages, how wide, how deep (edm2-style named presets).

What the paper gives: stages after the 16x16, 32x32 and 64x64 blocks of a 1024 generator (its
4-stage setting: "the 3rd, 6th, and 8th blocks ... are refined"), encoder features of c = 512
channels, d_k = 64 with multi-head attention, Selective Attention "applied several times". Every
other number below is OURS (the paper's appendix with the hyperparameters is not available), and
`PROVENANCE` says where each came from; `gradstyle-train` records it in training_options.json.

    preset  GRM width K / blocks    gate width   Aligner layers / heads / FFN   mu     use
    paper   K = c (512) / 2         c (512)      2 / c/64 = 8 / 2c              0.5    the paper's reading: F_m, W_T T_m and
                                                                                       W_f f_m live in one c-wide space
    fast    128 / 2                 64           2 / 8 / 2c                     0.5    CPU-friendly widths (bench_edit goal
                                                                                       <= 1.25x an e4e edit); NOT the paper's
    tiny    c (32) / 1              32           1 / 2 / 2c                     0.5    the 32-64 px generators of the tests

Widths of the generator features (C) are always read from the generator
(`G.synthesis.stage_channels`), never hard-coded; 'c' in a preset means the encoder's feature
channels.
"""

import copy

from stylegan2_ada_pytorch import dnnlib

#----------------------------------------------------------------------------

STAGE_CLASS_NAME = 'gradstyle_plugin.stage.GradStyleStage'

config_presets = {
    'paper': dnnlib.EasyDict(
        feature_channels    = 512,
        grm_kwargs          = dnnlib.EasyDict(hidden_channels='c', num_blocks=2),
        aligner_kwargs      = dnnlib.EasyDict(num_layers=2, head_dim=64, mu=0.5, ffn_mult=2),
        gate_kwargs         = dnnlib.EasyDict(hidden_channels='c'),
    ),
    'fast': dnnlib.EasyDict(
        feature_channels    = 512,
        grm_kwargs          = dnnlib.EasyDict(hidden_channels=128, num_blocks=2),
        aligner_kwargs      = dnnlib.EasyDict(num_layers=2, head_dim=64, mu=0.5, ffn_mult=2),
        gate_kwargs         = dnnlib.EasyDict(hidden_channels=64),
    ),
    'tiny': dnnlib.EasyDict(
        feature_channels    = 32,
        grm_kwargs          = dnnlib.EasyDict(hidden_channels='c', num_blocks=1),
        aligner_kwargs      = dnnlib.EasyDict(num_layers=1, head_dim=16, mu=0.5, ffn_mult=2),
        gate_kwargs         = dnnlib.EasyDict(hidden_channels=32),
    ),
}

# Where every preset value comes from: 'paper' (stated in the paper) or 'ours: <reason / nearest
# public default>'. Keys are the preset's dotted names. See docs/paper-notes.md for the full table.
PROVENANCE = {
    'stages':                       'paper: b16/b32/b64 ("3rd, 6th and 8th blocks", 4-stage process) for >= 64 px generators; '
                                    'ours: b8/b16/b32 below 64 px',
    'feature_channels':             'paper: c = 512 (e4e pyramid features); ours for `tiny`',
    'grm_kwargs.hidden_channels':   'ours: paper preset K = c, our reading of "transfer both features to the same semantic '
                                    'space" of c channels; fast 128 (CPU speed)',
    'grm_kwargs.num_blocks':        'ours: 2 residual blocks (the paper: E_res is "ResNet-based")',
    'gate_kwargs.hidden_channels':  'ours: paper preset c; fast 64 (CPU speed)',
    'aligner_kwargs.num_layers':    'ours: 2 (the paper: Selective Attention "applied several times")',
    'aligner_kwargs.head_dim':      'paper: d_k = 64 (tiny: 16, ours)',
    'aligner_kwargs.heads':         'ours: C / d_k (8 at 512 channels); the paper: "the multi-head mechanism is employed"',
    'aligner_kwargs.ffn_mult':      'ours: FFN width 2C between attention layers (the paper shows no FFN)',
    'aligner_kwargs.mu':            'ours: 0.5 (the paper gives no value for mu)',
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

def preset_record(name, mu=None):
    """Plain-data record of a preset for training_options.json: its values and their provenance."""
    cfg = get_preset(name)
    if mu is not None:
        cfg.aligner_kwargs.mu = float(mu)
    return dict(name=name, values=cfg, provenance=dict(PROVENANCE))

def _resolve_c(kwargs, c):
    out = dnnlib.EasyDict(kwargs)
    if out.get('hidden_channels') == 'c':
        out.hidden_channels = int(c)
    return out

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
    grm_kwargs, gate_kwargs = _resolve_c(cfg.grm_kwargs, c), _resolve_c(cfg.gate_kwargs, c)
    last = G.synthesis.stages[-1]
    return {stage: [dnnlib.EasyDict(class_name=STAGE_CLASS_NAME, channels=G.synthesis.stage_channels[stage],
        feature_channels=c, is_last=(stage == last), img_channels=G.img_channels,
        grm_kwargs=grm_kwargs, aligner_kwargs=cfg.aligner_kwargs, gate_kwargs=gate_kwargs)] for stage in stages}

#----------------------------------------------------------------------------
