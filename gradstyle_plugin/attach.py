"""Attach GradStyle to a loaded generator without changing what it computes.

    >>> import stylegan2_ada_pytorch as sg
    >>> from gradstyle_plugin import attach
    >>> G = sg.load_network_pkl(open('ffhq.pkl', 'rb'))['G_ema']
    >>> G_gs = attach.attach(G, preset='paper')           # same images until GradStyle is trained
    >>> G_gs.synthesis.injectors.b64[0]                    # GradStyleStage(channels=512, ...)

The generator is rebuilt from its own `init_kwargs` with GradStyle's stages declared in
`synthesis_kwargs.injector_kwargs` (so pickles, `copy.deepcopy` and the toolkit's rebuild path keep
them), every tensor of the original is copied, and the new branches start as the identity.
"""

import copy

import torch

from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch.torch_utils import misc
from gradstyle_plugin import presets

#----------------------------------------------------------------------------

def attach(G_base, preset='paper', stages=None, mu=None, feature_channels=None):
    """Return a copy of G_base with GradStyle stages attached (eval mode, requires_grad False)."""
    if getattr(G_base.synthesis, 'injectors', None) is not None:
        raise dnnlib.UserError('this generator already has injectors attached; load the plain generator')
    kwargs = G_base.init_kwargs
    kwargs.synthesis_kwargs = dnnlib.EasyDict(kwargs.get('synthesis_kwargs', {}))
    kwargs.synthesis_kwargs.injector_kwargs = presets.stage_injector_kwargs(G_base, preset=preset, stages=stages,
        mu=mu, feature_channels=feature_channels)
    device = next(G_base.parameters()).device
    G = type(G_base)(*G_base.init_args, **kwargs).eval().requires_grad_(False)
    misc.copy_params_and_buffers(G_base, G, require_all=False)
    copied = {name for name, _ in misc.named_params_and_buffers(G)}
    lost = [name for name, _ in misc.named_params_and_buffers(G_base) if name not in copied]
    if lost:
        raise RuntimeError(f'attach: {len(lost)} tensors of the base generator have no place in the rebuilt one: {lost[:5]}')
    return G.to(device)

def detach_gradstyle(G):
    """The plain generator inside a GradStyle one (injectors removed, weights copied)."""
    kwargs = G.init_kwargs
    kwargs.synthesis_kwargs = dnnlib.EasyDict(kwargs.get('synthesis_kwargs', {}))
    kwargs.synthesis_kwargs.pop('injector_kwargs', None)
    plain = type(G)(*G.init_args, **kwargs).eval().requires_grad_(False)
    misc.copy_params_and_buffers(G, plain, require_all=True)
    return plain.to(next(G.parameters()).device)

def stage_modules(G):
    """{stage: GradStyleStage} of a generator with GradStyle attached."""
    injectors = getattr(G.synthesis, 'injectors', None)
    if injectors is None:
        return {}
    return {stage: chain[0] for stage, chain in injectors.items() if len(chain) and type(chain[0]).__name__ == 'GradStyleStage'}

def grm_parameters(G):
    return [p for stage in stage_modules(G).values() for p in stage.grm_parameters()]

def gam_parameters(G):
    return [p for stage in stage_modules(G).values() for p in stage.gam_parameters()]

#----------------------------------------------------------------------------
