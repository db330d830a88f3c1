"""Tiny networks and an example injector, shipped for tests (ours and plugin authors').

    >>> from stylegan2_ada_pytorch import testing
    >>> G = testing.tiny_generator()                     # 32x32, stages b4 b8 b16 b32, 47,787 params
    >>> D = testing.tiny_discriminator()
    >>> img = G(torch.randn([2, G.z_dim]), None)         # [2, 3, 32, 32]

With injectors declared the persistent way (the spec ends up in `G.init_kwargs`):

    >>> G = testing.tiny_generator(synthesis_kwargs=dict(injector_kwargs={
    ...     'b16': [testing.zero_conv_spec(G.synthesis.stage_channels['b16'])]}))

Everything is built deterministically from `seed` without touching the global RNG, in eval mode
with `requires_grad_(False)` (the toolkit's convention for loaded networks).
"""

import copy

import torch

from .torch_utils import persistence
from . import dnnlib
from .injection import Injector
from .networks import Discriminator, Generator

__all__ = ['TINY_G_KWARGS', 'TINY_D_KWARGS', 'tiny_generator', 'tiny_discriminator', 'ZeroConvInjector', 'zero_conv_spec']

#----------------------------------------------------------------------------

TINY_G_KWARGS = dict(z_dim=32, w_dim=32, c_dim=0, img_resolution=32, img_channels=3,
    mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(channel_base=256, channel_max=32, num_fp16_res=0))

TINY_D_KWARGS = dict(c_dim=0, img_resolution=32, img_channels=3, channel_base=256, channel_max=32, num_fp16_res=0,
    block_kwargs=dict(), mapping_kwargs=dict(), epilogue_kwargs=dict(mbstd_group_size=2))

def _merge(defaults, overrides):
    # Top-level keys are replaced; the nested *_kwargs dicts are updated key by key.
    kwargs = copy.deepcopy(defaults)
    for key, value in overrides.items():
        if key.endswith('_kwargs') and isinstance(kwargs.get(key), dict) and isinstance(value, dict):
            kwargs[key] = dnnlib.EasyDict(kwargs[key], **value)
        else:
            kwargs[key] = value
    return kwargs

def _build(cls, kwargs, seed):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(**kwargs).eval().requires_grad_(False)

def tiny_generator(seed=0, **overrides):
    """A 32x32 Generator (z=w=32, 2 mapping layers, channels 32/32/16/8), seeded, eval, no grad.

    `overrides` replace top-level kwargs; `mapping_kwargs`/`synthesis_kwargs` are merged key by key.

    Example:
        >>> G = tiny_generator(synthesis_kwargs=dict(num_fp16_res=2, conv_clamp=256))
    """
    return _build(Generator, _merge(TINY_G_KWARGS, overrides), seed)

def tiny_discriminator(seed=0, **overrides):
    """The matching 32x32 resnet Discriminator (minibatch-std groups of 2), seeded, eval, no grad.

    Example:
        >>> D = tiny_discriminator(c_dim=4)
    """
    return _build(Discriminator, _merge(TINY_D_KWARGS, overrides), seed)

#----------------------------------------------------------------------------

@persistence.persistent_class
class ZeroConvInjector(Injector):
    """Example persistent injector: `x + conv1x1(x)` with the conv zero-initialised.

    Attaching it leaves the generator's output unchanged until its weights are trained.
    Maths in fp32, result in the input dtype; `img` passes through.

    Example:
        >>> spec = zero_conv_spec(channels=16)
        >>> G = tiny_generator(synthesis_kwargs=dict(injector_kwargs={'b16': [spec]}))
    """

    def __init__(self,
        channels,                   # Channels of x at the stage this injector is attached to.
    ):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, channels, kernel_size=1)
        torch.nn.init.zeros_(self.conv.weight)
        torch.nn.init.zeros_(self.conv.bias)

    def forward(self, x, img, *, stage, ws, **inject_kwargs):
        y = x.to(torch.float32)
        y = y + self.conv(y)
        return y.to(x.dtype), img

def zero_conv_spec(channels):
    """The `injector_kwargs` entry for a ZeroConvInjector."""
    return dnnlib.EasyDict(class_name=f'{__name__}.ZeroConvInjector', channels=channels)

#----------------------------------------------------------------------------
