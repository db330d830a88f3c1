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

Call order at one stage: prepended transient injectors (latest first), persistent injectors in
declared order, appended transient injectors in registration order.

Per-call context travels in one dict, passed to every injector as keyword arguments:

    >>> img = G(z, c, inject_kwargs=dict(features=feats_by_stage, record=side_outputs))

Key per-stage data by stage name (`features['b64']`) and put side outputs into a dict you own.
"""

import torch

from .torch_utils import persistence
from . import dnnlib
from .networks import InjectorHandle  # noqa: F401  (re-exported: the handle register_injector returns)

__all__ = ['Injector', 'InjectorHandle', 'stage_names', 'stage_resolution', 'injector_spec']

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
    """

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
