"""Feature injection: run your own modules between the generator's synthesis blocks.

A *stage* is named after the synthesis block whose output it refines: `b4`, `b8`, ...,
`b<img_resolution>` (the state_dict prefixes of `G.synthesis`). After block `b<res>` computes
`x, img = block(x, img, ws, ...)`, the injectors of stage `b<res>` run one after the other, each
receiving the previous one's result:

    x, img = injector(x, img, stage='b<res>', ws=<that block's ws>, **inject_kwargs)

`x` is the feature map [N, G.synthesis.stage_channels[stage], res, res] (fp16 in fp16 blocks),
`img` the running RGB image [N, img_channels, res, res] in fp32 (None before the first ToRGB in
the 'orig' architecture). An injector must return `(x, img)` with the same shapes and dtypes;
the host checks and names the offending injector otherwise. Do the maths in fp32 and cast back.

Two ways to attach injectors:

1. Persistent (trained, saved, copied with the network): declare them in the constructor
   arguments, so `init_kwargs`, pickles, `copy.deepcopy` and the rebuild path
   `type(G)(**G.init_kwargs)` + `misc.copy_params_and_buffers` all keep them:

       >>> from stylegan2_ada_pytorch import dnnlib, networks
       >>> G = networks.Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
       ...     synthesis_kwargs=dict(channel_base=256, channel_max=32, injector_kwargs={
       ...         'b16': [dnnlib.EasyDict(class_name='stylegan2_ada_pytorch.testing.ZeroConvInjector', channels=16)]}))
       >>> G.synthesis.injectors.b16[0]
       ZeroConvInjector(...)

   Their parameters appear in the state_dict as `synthesis.injectors.<stage>.<index>.*`.

2. Transient (tests, experiments): the caller owns the module, as with torch hooks. It is not a
   submodule, not saved, not deep-copied, and `save_network_pkl` refuses a network holding one:

       >>> with G.synthesis.register_injector('b16', MyProbe()):
       ...     img = G(z, c)

To add injectors to a generator you loaded (a pickle), rebuild it with `attach_injectors`; every
weight is copied and the original is left untouched:

       >>> G2 = injection.attach_injectors(G, {'b16': [injector_spec('my_plugin.inject.Tint', channels=16)]})

Plugin authors check their injector against the host's contract with
`stylegan2_ada_pytorch.testing.check_injector(spec)`.

Call order at one stage: prepended transient injectors (latest first), persistent injectors in
declared order, appended transient injectors in registration order.

Per-call context travels in one dict, passed to every injector as keyword arguments:

    >>> img = G(z, c, inject_kwargs=dict(features=feats_by_stage, record=side_outputs))

Key per-stage data by stage name (`features['b64']`) and put side outputs into a dict you own.
"""

import copy
import re

import torch

from . import dnnlib
from .networks import InjectorHandle
from .torch_utils import misc, persistence

__all__ = ['Injector', 'InjectorHandle', 'stage_names', 'stage_resolution', 'injector_spec', 'attach_injectors',
    'detach_injectors']

#----------------------------------------------------------------------------

@persistence.persistent_class
class Injector(torch.nn.Module):
    """Base class of injectors: a no-op that documents the call.

    Subclass it, decorate the subclass with `@persistence.persistent_class` (so it can live in a
    network pickle), give its constructor plain-data arguments, and override `forward`.
    Zero-initialise the last layer so attaching a fresh injector changes nothing.

    Example:
        >>> @persistence.persistent_class
        ... class Gain(Injector):
        ...     def __init__(self, channels):
        ...         super().__init__()
        ...         self.scale = torch.nn.Parameter(torch.zeros([channels]))
        ...     def forward(self, x, img, *, stage, ws, **inject_kwargs):
        ...         y = x.float() * (1 + self.scale.reshape(1, -1, 1, 1))
        ...         return y.to(x.dtype), img

    Building a subclass that is not decorated raises a TypeError that says what to add.
    """

    def __init__(self):
        super().__init__()
        if not persistence.is_persistent(self):
            name = type(self).__name__
            raise TypeError(f'{type(self).__module__}.{name} is not a persistent class; add the decorator '
                f'@persistence.persistent_class (from stylegan2_ada_pytorch.torch_utils import persistence) above '
                f'"class {name}" so that network pickles can hold it')

    def forward(self, x, img, *, stage, ws, **inject_kwargs):
        """Refine the output of block `stage`.

        Args:
            x:      features [N, C, res, res] after the block (fp16 in fp16 blocks).
            img:    running image [N, img_channels, res, res], fp32, or None.
            stage:  the stage name, e.g. 'b64'.
            ws:     the block's ws [N, num_conv + num_torgb, w_dim].
            **inject_kwargs: the per-call context given to `G(..., inject_kwargs=...)`;
                accept and ignore what you do not use.

        Returns:
            (x, img) with the shapes and dtypes they came in with.
        """
        return x, img

#----------------------------------------------------------------------------

def stage_names(img_resolution):
    """Stage names of a generator with this output resolution, coarse to fine.

    Example:
        >>> stage_names(32)
        ['b4', 'b8', 'b16', 'b32']
    """
    res = int(img_resolution)
    if res < 4 or res & (res - 1):
        raise ValueError(f'img_resolution must be a power of two >= 4, got {img_resolution!r}')
    return [f'b{2 ** i}' for i in range(2, res.bit_length())]

def stage_resolution(stage):
    """The resolution of a stage name.

    Example:
        >>> stage_resolution('b64')
        64
    """
    if not (isinstance(stage, str) and stage.startswith('b') and stage[1:].isdigit()):
        raise ValueError(f"stage names look like 'b64', got {stage!r}")
    return int(stage[1:])

def injector_spec(class_name, **kwargs):
    """One entry of `injector_kwargs`: an EasyDict with `class_name` and constructor arguments.

    Example:
        >>> injector_kwargs = {'b16': [injector_spec('stylegan2_ada_pytorch.testing.ZeroConvInjector', channels=16)]}
    """
    if not isinstance(class_name, str) or '.' not in class_name:
        raise ValueError(f"class_name must be a dotted 'package.module.Class' string, got {class_name!r}")
    return dnnlib.EasyDict(class_name=class_name, **kwargs)

#----------------------------------------------------------------------------

def _generator_kwargs(G):
    kwargs = G.init_kwargs
    kwargs.synthesis_kwargs = dnnlib.EasyDict(kwargs.get('synthesis_kwargs', {}))
    return kwargs

def attach_injectors(G, injector_kwargs):
    """Return a copy of generator `G` rebuilt with persistent injectors added; every weight of G is copied.

    `injector_kwargs` is `{stage: [spec, ...]}` (specs as `injector_spec` makes them). The specs are
    appended to those G already declares, so the new generator's `init_kwargs` (and every pickle,
    deep copy and rebuild of it) carries all of them. G is not changed; the result is on G's
    device, with G's `training` flag and requires_grad False. New injectors start as constructed
    (zero-initialised ones leave the output unchanged). Raises ValueError for an unknown stage and
    TypeError for a class that is not persistent, before anything is copied.

    Example:
        >>> G = legacy.load_network_pkl(open('ffhq.pkl', 'rb'))['G_ema']
        >>> G2 = injection.attach_injectors(G, {'b64': [injector_spec('my_plugin.inject.Tint', channels=512)]})
        >>> G2.synthesis.injectors.b64[0]                     # Tint(...); G itself has no injectors
    """
    if not isinstance(injector_kwargs, dict):
        raise TypeError(f'attach_injectors: injector_kwargs must be a dict {{stage: [spec, ...]}}, got {type(injector_kwargs).__name__}')
    for stage in injector_kwargs:
        if stage not in G.synthesis.stages:
            raise ValueError(f'attach_injectors: unknown stage {stage!r}; valid stages are {", ".join(G.synthesis.stages)}')
    kwargs = _generator_kwargs(G)
    merged = {stage: list(specs) for stage, specs in (kwargs.synthesis_kwargs.get('injector_kwargs') or {}).items()}
    new_ok = []
    for stage, specs in injector_kwargs.items():
        if not isinstance(specs, (list, tuple)):
            raise TypeError(f'attach_injectors: injector_kwargs[{stage!r}] must be a list of specs, got {type(specs).__name__}')
        start = len(merged.get(stage, []))
        merged[stage] = merged.get(stage, []) + [dnnlib.EasyDict(copy.deepcopy(spec)) for spec in specs]
        new_ok += [rf'synthesis\.injectors\.{re.escape(stage)}\.{idx}\..*' for idx in range(start, len(merged[stage]))]
    kwargs.synthesis_kwargs.injector_kwargs = merged
    return misc.rebuild_module(G, kwargs, new_ok='|'.join(new_ok) or None)

def detach_injectors(G):
    """Return a copy of `G` without its persistent injectors (the plain generator); G's other weights are copied.

    Example:
        >>> G_plain = injection.detach_injectors(G2)
    """
    kwargs = _generator_kwargs(G)
    kwargs.synthesis_kwargs.pop('injector_kwargs', None)
    return misc.rebuild_module(G, kwargs, dropped_ok=r'synthesis\.injectors\..*')

#----------------------------------------------------------------------------
