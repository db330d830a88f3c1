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

from stylegan2_ada_pytorch import dnnlib, injection
from gradstyle_plugin import presets

#----------------------------------------------------------------------------

def attach(G_base, preset='paper', stages=None, mu=None, feature_channels=None):
    """Return a copy of G_base with GradStyle stages attached (eval mode, requires_grad False)."""
    if getattr(G_base.synthesis, 'injectors', None) is not None:
        raise dnnlib.UserError('this generator already has injectors attached; load the plain generator')
    injector_kwargs = presets.stage_injector_kwargs(G_base, preset=preset, stages=stages, mu=mu, feature_channels=feature_channels)
    return injection.attach_injectors(G_base, injector_kwargs).eval()

def detach_gradstyle(G):
    """The plain generator inside a GradStyle one (injectors removed, weights copied)."""
    return injection.detach_injectors(G).eval()

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
