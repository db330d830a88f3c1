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

Plugin authors run the host's contract checks on their injector in one call:

    >>> testing.check_injector(dnnlib.EasyDict(class_name='my_plugin.inject.Tint', channels=16), stage='b16')
    ['persistent', 'attach', 'extra inject_kwargs', 'zero-init identity', 'deepcopy', 'rebuild require_all', 'pickle round trip', 'fp16 in, fp16 out']
"""

import copy
import os
import tempfile

import torch

from . import dnnlib
from .injection import Injector, attach_injectors
from .networks import Discriminator, Generator
from .torch_utils import misc, persistence

__all__ = ['TINY_G_KWARGS', 'TINY_D_KWARGS', 'tiny_generator', 'tiny_discriminator', 'ZeroConvInjector', 'zero_conv_spec',
    'check_injector', 'InjectorCheckError']

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
# The injector contract, checked for plugin authors (ANCHORS 4.5: the tests every injector must pass).

class InjectorCheckError(AssertionError):
    """An injector broke the host's contract; the message names the check and what to change."""

class _DtypeProbe(torch.nn.Module):
    # A transient injector that records the dtype of x reaching the stage.
    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x, img, *, stage, ws, **inject_kwargs):
        self.seen.append(x.dtype)
        return x, img

def _fail(label, check, message):
    raise InjectorCheckError(f'check_injector({label}): {check}: {message}')

def _run(G, ws, inject_kwargs, **kwargs):
    return G.synthesis(ws, noise_mode='const', inject_kwargs=dict(inject_kwargs), **kwargs)

def _attempt(label, check, fn, hint=''):
    try:
        return fn()
    except InjectorCheckError:
        raise
    except Exception as err:
        _fail(label, check, f'{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ""}{hint}')

def _randomize_injectors(G, stage, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in G.synthesis.injectors[stage].parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)

def _same(label, check, a, b, atol):
    diff = float((a.detach().float() - b.detach().float()).abs().max())
    if not diff <= atol:
        _fail(label, check, f'outputs differ by {diff:.3g} (max abs, tolerance {atol:g})')

def check_injector(spec, stage='b16', inject_kwargs=None, G=None, atol=1e-5, seed=0):
    """Run the injection API's contract checks on one injector spec; return the names of the checks passed.

    The injector is attached at `stage` of `G` (default: `tiny_generator()`, stages b4..b32 with
    channels 32/32/16/8) through `injection.attach_injectors`, and exercised with a batch of 2 and
    the per-call context `inject_kwargs`. In order:

    - persistent / attach: the class is `@persistence.persistent_class` and builds from `spec`;
    - extra inject_kwargs: forward accepts context it does not know (`**inject_kwargs`);
    - zero-init identity: a freshly attached injector leaves the image unchanged (within `atol`);
    - (the injector's parameters are then randomised, so the next checks compare non-trivial outputs)
    - deepcopy: `copy.deepcopy(G)` (what G_ema is) keeps the injector and its output;
    - rebuild require_all: `type(G)(**G.init_kwargs)` + `misc.copy_params_and_buffers(require_all=True)`
      rebuilds it exactly (fails for parameters created lazily or outside the constructor);
    - pickle round trip: `legacy.save_network_pkl` / `load_network_pkl` keep the spec and the output
      (the safe loader only rebuilds classes an installed plugin declares in an entry-point group);
    - fp16 in, fp16 out: in a generator whose top blocks run in fp16 the injector gets fp16 and
      returns fp16 (skipped for 'b4', which never runs in fp16).

    Raises InjectorCheckError naming the failed check and what to change.

    Example (in a plugin's test suite):
        >>> from stylegan2_ada_pytorch import testing
        >>> def test_tint_follows_the_injector_contract():
        ...     testing.check_injector(dict(class_name='my_plugin.inject.Tint', channels=16), stage='b16')
    """
    from . import legacy   # imported here: legacy imports the networks, as this module does
    spec = dnnlib.EasyDict(spec)
    label = f'{spec.get("class_name")} at {stage}'
    inject_kwargs = dict(inject_kwargs or {})
    G = tiny_generator() if G is None else G
    passed = []
    ws = torch.randn([2, G.num_ws, G.w_dim], generator=torch.Generator().manual_seed(seed)).to(next(G.parameters()).device)

    cls = _attempt(label, 'persistent', lambda: dnnlib.util.get_obj_by_name(spec.class_name))
    if not persistence.is_persistent(cls):
        _fail(label, 'persistent', f'{spec.class_name} is not a persistent class; add @persistence.persistent_class above its class statement')
    passed.append('persistent')
    G_inj = _attempt(label, 'attach', lambda: attach_injectors(G, {stage: [spec]}))
    passed.append('attach')

    _attempt(label, 'extra inject_kwargs', lambda: _run(G_inj, ws, dict(inject_kwargs, _check_injector_extra=1)),
        hint='; forward must take (x, img, *, stage, ws, **inject_kwargs) and accept context it does not use')
    passed.append('extra inject_kwargs')
    base = _run(G, ws, inject_kwargs)
    out = _attempt(label, 'zero-init identity', lambda: _run(G_inj, ws, inject_kwargs))
    _same(label, 'zero-init identity', out, base, atol)
    passed.append('zero-init identity')

    _randomize_injectors(G_inj, stage, seed)
    ref = _run(G_inj, ws, inject_kwargs)
    G_copy = _attempt(label, 'deepcopy', lambda: copy.deepcopy(G_inj))
    _same(label, 'deepcopy', _attempt(label, 'deepcopy', lambda: _run(G_copy, ws, inject_kwargs)), ref, 0)
    passed.append('deepcopy')

    def rebuild():
        new = type(G_inj)(**G_inj.init_kwargs).eval().requires_grad_(False).to(ws.device)
        misc.copy_params_and_buffers(G_inj, new, require_all=True)
        return _run(new, ws, inject_kwargs)
    _same(label, 'rebuild require_all', _attempt(label, 'rebuild require_all', rebuild,
        hint='; create every parameter and buffer in __init__ from its plain-data arguments'), ref, 0)
    passed.append('rebuild require_all')

    def round_trip():
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'net.pkl')
            legacy.save_network_pkl(dict(G=G_inj, D=None, G_ema=G_inj), path)
            return legacy.load_network_pkl(path)['G_ema'].to(ws.device)
    loaded = _attempt(label, 'pickle round trip', round_trip,
        hint=' (declare the class in the "stylegan2_ada_pytorch.injectors" entry-point group of your distribution)')
    if loaded.init_kwargs.synthesis_kwargs.injector_kwargs[stage][-1] != spec:
        _fail(label, 'pickle round trip', 'the loaded injector_kwargs differ from the spec')
    _same(label, 'pickle round trip', _attempt(label, 'pickle round trip', lambda: _run(loaded, ws, inject_kwargs)), ref, 0)
    passed.append('pickle round trip')

    if stage != 'b4':
        def fp16():
            kwargs = G.init_kwargs
            kwargs.synthesis_kwargs = dnnlib.EasyDict(kwargs.get('synthesis_kwargs', {}), num_fp16_res=len(G.synthesis.stages), conv_clamp=256)
            G16 = attach_injectors(misc.rebuild_module(G, kwargs), {stage: [spec]})
            probe = _DtypeProbe()
            with G16.synthesis.register_injector(stage, probe, prepend=True):
                img = _run(G16, ws, inject_kwargs, force_fp32=False)
            return probe.seen, img
        seen, img = _attempt(label, 'fp16 in, fp16 out', fp16,
            hint='; do the maths in fp32 and return x.to(input dtype), img unchanged in dtype')
        if seen != [torch.float16] or not torch.isfinite(img).all():
            _fail(label, 'fp16 in, fp16 out', f'the stage ran with {seen} or produced non-finite values')
        passed.append('fp16 in, fp16 out')
    return passed

#----------------------------------------------------------------------------
