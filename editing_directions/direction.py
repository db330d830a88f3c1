"""Editing directions in a generator's W / W+ space, and the fingerprint that ties them to it.

A direction only means something in the W space of the generator it was computed for: the same
vector used with another model (even another FFHQ model) silently gives unrelated edits. Every
`Direction` therefore records the fingerprint of its generator's mapping network, and the
registry refuses to hand it to a different generator unless asked to (`resolve(..., force=True)`).

Shape letters: N = batch, R = W+ rows (G.num_ws), D = G.w_dim, K = PCA components.

Kinds and how they are applied to W+ codes `ws` [N, R, D] (rows start..end-1 of the layer range):
- `interfacegan` (Shen et al., "Interpreting the latent space of GANs for semantic face
  editing", CVPR 2020): ws + alpha * d. A [1, D] direction is added to every row of the range;
  a [1, R, D] direction adds its own row r to row r.
- `ganspace` (Harkonen et al., "GANSpace", NeurIPS 2020), with e4e's rule: the current coordinate
  along component k is read from the first row, c = (ws[:, 0] - mean) . comp / std, and
  delta = (alpha - c) * comp * std is added to the rows of the range. So alpha SETS the
  coordinate (in std units) instead of adding to it.
- `custom`: any user vector, applied like `interfacegan`.
"""

import dataclasses
import hashlib
import math
from typing import Optional

import numpy as np
import torch

from stylegan2_ada_pytorch import dnnlib

__all__ = ['KINDS', 'DirectionError', 'FingerprintMismatchError', 'Direction', 'generator_fingerprint', 'short_fingerprint']

KINDS = ('interfacegan', 'ganspace', 'custom')
FINGERPRINT_VERSION = 'gradstyle-mapping-fingerprint/1'

#----------------------------------------------------------------------------

class DirectionError(dnnlib.UserError, ValueError):
    """A direction file, manifest entry or argument that cannot be used (one-line message)."""

class FingerprintMismatchError(DirectionError):
    """A direction was made for another generator than the one it is being used with."""

#----------------------------------------------------------------------------

def _mapping_of(G):
    mapping = getattr(G, 'mapping', G)
    if not isinstance(mapping, torch.nn.Module) or not hasattr(mapping, 'w_dim'):
        raise DirectionError(f'generator_fingerprint: expected a Generator or MappingNetwork, got {type(G).__name__}')
    return mapping

def generator_fingerprint(G):
    """SHA-256 (hex) identifying the W space of a generator: its mapping network and w_avg.

    The digest covers, in this order:
    1. the version tag `gradstyle-mapping-fingerprint/1`;
    2. the mapping's z_dim, c_dim, w_dim, num_layers;
    3. for every fully connected layer (in `named_modules` order) its name, activation, and the
       runtime gains `weight_gain`, `bias_gain` (they scale the stored weights, so they are part
       of the function);
    4. every entry of `G.mapping.state_dict()` sorted by name (weights, biases, label embedding,
       `w_avg`): `name`, shape, then the values as little-endian float32 bytes.

    It does NOT cover `num_ws` (how many rows the mapping broadcasts to; W+ row counts are checked
    separately), the synthesis network or any injector: attaching GradStyle modules, converting to
    fp16, moving to another device or a pickle round trip leave it unchanged, while training the
    mapping (or its w_avg) changes it. `G` may also be the MappingNetwork itself.

    Example:
        >>> from stylegan2_ada_pytorch import testing
        >>> fp = generator_fingerprint(testing.tiny_generator())
        >>> len(fp)
        64
    """
    mapping = _mapping_of(G)
    h = hashlib.sha256()
    h.update(FINGERPRINT_VERSION.encode() + b'\n')
    dims = [getattr(mapping, key, None) for key in ('z_dim', 'c_dim', 'w_dim', 'num_layers')]
    h.update(('dims:' + ','.join(str(v) for v in dims) + '\n').encode())
    for name, module in mapping.named_modules():
        if hasattr(module, 'weight_gain'):
            gains = (getattr(module, 'activation', ''), float(module.weight_gain), float(getattr(module, 'bias_gain', 1)))
            h.update(f'layer:{name}:{gains[0]}:{gains[1]!r}:{gains[2]!r}\n'.encode())
    for name, tensor in sorted(mapping.state_dict().items()):
        values = tensor.detach().to(device='cpu', dtype=torch.float32).contiguous().numpy().astype('<f4')
        h.update(f'tensor:{name}:{list(values.shape)}\n'.encode())
        h.update(values.tobytes())
    return h.hexdigest()

def short_fingerprint(fingerprint):
    """First 12 hex digits, for messages and listings ('unbound' when None)."""
    return fingerprint[:12] if fingerprint else 'unbound'

#----------------------------------------------------------------------------

def _as_float_tensor(value, what):
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise DirectionError(f'{what}: expected an array, got {type(value).__name__}')
    if not value.dtype.is_floating_point:
        raise DirectionError(f'{what}: expected floating-point values, got {value.dtype}')
    value = value.detach().to(device='cpu', dtype=torch.float32).contiguous()
    if not torch.isfinite(value).all():
        raise DirectionError(f'{what}: contains NaN or inf')
    return value

@dataclasses.dataclass(eq=False)
class Direction:
    """One named editing direction (in memory only; the registry stores it as .npy + manifest).

    Fields: `name`; `kind` (interfacegan | ganspace | custom); `vector` [1, D] (space W) or
    [1, R, D] (space W+; for ganspace the unit component [1, D]); `layers` = (start, end) rows of
    W+ to edit, end exclusive, end None = up to num_ws; `default_alpha` (ganspace: the default
    strength); `fingerprint` of the generator it belongs to (None = unbound); `generator`, a
    human label of that generator; `source` (provenance); ganspace only: `mean` [1, D], `std`
    (float), `component` (index k); `group` (registry folder) and `info` (extra metrics).

    Example:
        >>> d = Direction('smile', 'interfacegan', torch.randn(1, 512), default_alpha=3.0)
        >>> ws_edit = d.apply(ws)                # ws [N, num_ws, 512]; alpha defaults to 3.0
        >>> ws_edit = d.apply(ws, alpha=-2.0)
    """
    name:           str
    kind:           str
    vector:         torch.Tensor
    layers:         tuple = (0, None)
    default_alpha:  float = 3.0
    fingerprint:    Optional[str] = None
    generator:      str = ''
    source:         str = ''
    mean:           Optional[torch.Tensor] = None
    std:            Optional[float] = None
    component:      Optional[int] = None
    group:          str = ''
    info:           dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise DirectionError(f'direction {self.name!r}: unknown kind {self.kind!r} (expected one of {", ".join(KINDS)})')
        self.vector = _as_float_tensor(self.vector, f'direction {self.name!r}')
        if self.vector.ndim not in (2, 3) or self.vector.shape[0] != 1:
            raise DirectionError(f'direction {self.name!r}: expected shape [1, w_dim] or [1, num_ws, w_dim], got {list(self.vector.shape)}')
        self.layers = self._check_layers(self.layers)
        self.default_alpha = float(self.default_alpha)
        if self.kind == 'ganspace':
            self._check_ganspace()
        elif self.mean is not None or self.std is not None:
            raise DirectionError(f'direction {self.name!r}: mean/std are only used by ganspace directions')

    def _check_layers(self, layers):
        try:
            start, end = layers
            start, end = int(start), (None if end is None else int(end))
        except (TypeError, ValueError):
            raise DirectionError(f'direction {self.name!r}: layer range must be [start, end), got {layers!r}')
        if start < 0 or (end is not None and end <= start):
            raise DirectionError(f'direction {self.name!r}: empty or negative layer range [{start}, {end})')
        if self.space == 'W+' and end is not None and end > self.rows:
            raise DirectionError(f'direction {self.name!r}: layer range [{start}, {end}) exceeds its {self.rows} rows')
        return (start, end)

    def _check_ganspace(self):
        if self.space != 'W':
            raise DirectionError(f'direction {self.name!r}: a ganspace component must have shape [1, w_dim], got {list(self.vector.shape)}')
        if self.mean is None or self.std is None:
            raise DirectionError(f'direction {self.name!r}: a ganspace direction needs mean and std')
        self.mean = _as_float_tensor(self.mean, f'direction {self.name!r} mean').reshape(1, -1)
        if self.mean.shape[1] != self.w_dim:
            raise DirectionError(f'direction {self.name!r}: mean has width {self.mean.shape[1]}, the component has {self.w_dim}')
        self.std = float(self.std)
        if not (math.isfinite(self.std) and self.std > 0):
            raise DirectionError(f'direction {self.name!r}: std must be a positive number, got {self.std}')

    @property
    def space(self):
        """'W' for a [1, D] vector (broadcast over rows), 'W+' for a [1, R, D] one (one row per layer)."""
        return 'W' if self.vector.ndim == 2 else 'W+'

    @property
    def w_dim(self):
        return int(self.vector.shape[-1])

    @property
    def rows(self):
        """Number of W+ rows the direction carries (None for a W direction)."""
        return int(self.vector.shape[1]) if self.space == 'W+' else None

    def layer_range(self, num_ws):
        """(start, end) for a generator with `num_ws` rows; raises if it does not fit."""
        start, end = self.layers
        end = num_ws if end is None else end
        if end > num_ws or start >= num_ws:
            raise DirectionError(f'direction {self.name!r}: layer range [{start}, {end}) does not fit a generator with {num_ws} W+ rows')
        return start, end

    def check_shapes(self, num_ws, w_dim):
        """Raise DirectionError unless the direction fits W+ codes of shape [N, num_ws, w_dim]."""
        if self.w_dim != w_dim:
            raise DirectionError(f'direction {self.name!r} has width {self.w_dim}, the generator has w_dim {w_dim}')
        if self.space == 'W+' and self.rows != num_ws:
            raise DirectionError(f'direction {self.name!r} has {self.rows} rows, the generator has {num_ws}')
        self.layer_range(num_ws)

    def check_generator(self, G):
        """check_shapes() against G.num_ws and G.w_dim."""
        self.check_shapes(int(G.num_ws), int(G.w_dim))

    def matches(self, G=None, fingerprint=None):
        """True when the direction was made for this generator (give G or its fingerprint)."""
        fingerprint = fingerprint if fingerprint is not None else generator_fingerprint(G)
        return self.fingerprint is not None and self.fingerprint == fingerprint

    def apply(self, ws, alpha=None):
        """Edited copy of the W+ codes `ws` [N, R, D]; `alpha` is a number or a [N] tensor.

        interfacegan/custom: ws + alpha * d on rows start..end-1. ganspace: sets the coordinate
        along the component to `alpha` (std units), as e4e does. `ws` itself is not modified.
        """
        if not isinstance(ws, torch.Tensor) or ws.ndim != 3:
            raise DirectionError(f'direction {self.name!r}: expected W+ codes [N, num_ws, w_dim], got {_shape_of(ws)}')
        self.check_shapes(ws.shape[1], ws.shape[2])
        start, end = self.layer_range(ws.shape[1])
        alpha = self.default_alpha if alpha is None else alpha
        alpha = torch.as_tensor(alpha, dtype=torch.float32, device=ws.device)
        if alpha.ndim > 1 or (alpha.ndim == 1 and alpha.shape[0] != ws.shape[0]):
            raise DirectionError(f'direction {self.name!r}: alpha must be a number or have one value per code ({ws.shape[0]}), got shape {list(alpha.shape)}')
        alpha = alpha.reshape(-1, 1, 1)                                         # [N11] or [111]
        x = ws.to(torch.float32)
        d = self.vector.to(x.device)
        if self.kind == 'ganspace':
            delta = self._ganspace_delta(x, d, alpha)                           # [N1D]
        elif self.space == 'W':
            delta = alpha * d.unsqueeze(1)                                      # [N1D]
        else:
            delta = alpha * d[:, start:end]                                     # [NRD]
        out = x.clone()
        out[:, start:end] = out[:, start:end] + delta
        return out.to(ws.dtype)

    def _ganspace_delta(self, x, comp, alpha):
        mean = self.mean.to(x.device)
        coord = ((x[:, 0] - mean) @ comp[0]) / self.std                         # [N]
        return (alpha - coord.reshape(-1, 1, 1)) * (comp * self.std).unsqueeze(1)

    def describe(self):
        """One-line summary for listings."""
        start, end = self.layers
        rng = f'[{start}:{"" if end is None else end}]'
        return f'{self.name} {self.kind} {self.space} {list(self.vector.shape)} layers {rng} alpha {self.default_alpha:g}'

def _shape_of(value):
    shape = getattr(value, 'shape', None)
    return list(shape) if shape is not None else type(value).__name__

#----------------------------------------------------------------------------
