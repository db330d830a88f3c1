"""Upsample, pad, FIR-filter and downsample 2-D images in one op (`upfirdn2d`).

StyleGAN2 (Karras et al. 2020, appendix B) resamples feature maps with a separable [1,3,3,1]
binomial filter; StyleGAN2-ADA uses the same op for its augmentation filters. For every channel:

  1. upsample by inserting `up - 1` zeros after every sample,
  2. pad by [x0, x1, y0, y1] (negative values crop),
  3. convolve (true convolution; `flip_filter=True` correlates instead) with `f * gain^(f.ndim/2)`,
     keeping only the fully overlapping (valid) outputs,
  4. keep every `down`-th sample, starting at the first.

`impl='cuda'` runs the kernel of `upfirdn2d.cu` when the tensor is on a CUDA device and the plugin
built; otherwise (and with `impl='ref'`) the pure-PyTorch reference runs. Both support gradients
of any order.

Shape legend: N batch, C channels, H/W height/width; f is [fh, fw] (2-D) or [fw] (separable, 1-D).
"""

import os

import numpy as np
import torch
import torch.nn.functional as F

from .. import custom_ops

#----------------------------------------------------------------------------

_plugin = None      # None: not tried yet; False: unavailable; else the loaded extension module.
_plugin_sources = dict(module_name='upfirdn2d_plugin', sources=['upfirdn2d.cpp', 'upfirdn2d.cu'], headers=['upfirdn2d.h'],
    source_dir=os.path.dirname(__file__), extra_cuda_cflags=['--use_fast_math'])

def _init():
    """Build (once per process) and load the CUDA plugin; False if it is unavailable."""
    global _plugin
    if _plugin is None:
        _plugin = custom_ops.get_plugin(**_plugin_sources, fallback=True) or False
    return _plugin is not False

#----------------------------------------------------------------------------

def _parse_scaling(scaling, name='up'):
    if isinstance(scaling, int):
        scaling = [scaling, scaling]
    assert isinstance(scaling, (list, tuple)) and len(scaling) == 2, f'upfirdn2d: {name} must be an int or [x, y], got {scaling!r}'
    sx, sy = [int(s) for s in scaling]
    assert sx >= 1 and sy >= 1, f'upfirdn2d: {name} must be >= 1, got {scaling!r}'
    return sx, sy

def _parse_padding(padding):
    if isinstance(padding, int):
        padding = [padding, padding]
    assert isinstance(padding, (list, tuple)), f'upfirdn2d: padding must be an int or a list, got {padding!r}'
    assert all(isinstance(p, (int, np.integer)) for p in padding), f'upfirdn2d: padding must hold ints, got {padding!r}'
    if len(padding) == 2:
        padx, pady = padding
        padding = [padx, padx, pady, pady]
    assert len(padding) == 4, f'upfirdn2d: padding must have 1, 2 or 4 entries, got {padding!r}'
    return [int(p) for p in padding]

def _get_filter_size(f):
    if f is None:
        return 1, 1
    assert isinstance(f, torch.Tensor) and f.ndim in [1, 2], 'upfirdn2d: f must be None or a 1-D/2-D tensor'
    fw = f.shape[-1]
    fh = f.shape[0]
    return int(fw), int(fh)

#----------------------------------------------------------------------------

def setup_filter(f, device=torch.device('cpu'), normalize=True, flip_filter=False, gain=1, separable=None):  # noqa: B008 (toolkit signature)
    """Turn a list/array/tensor into a float32 filter tensor for `upfirdn2d`.

    A 1-D filter becomes the 2-D outer product unless `separable` (default: separable iff 1-D
    with >= 8 taps). The filter is divided by its sum if `normalize`, flipped if `flip_filter`, and
    multiplied by `gain^(ndim/2)`.

    Example:
        >>> f = setup_filter([1, 3, 3, 1])      # [4, 4], outer([1,3,3,1]) / 64
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    assert f.ndim in [0, 1, 2], f'setup_filter: f must be a scalar, 1-D or 2-D, got {f.ndim}-D'
    assert f.numel() > 0, 'setup_filter: f must not be empty'
    if f.ndim == 0:
        f = f[np.newaxis]
    if separable is None:
        separable = (f.ndim == 1 and f.numel() >= 8)
    if f.ndim == 1 and not separable:
        f = f.ger(f)
    assert f.ndim == (1 if separable else 2)
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)

#----------------------------------------------------------------------------

def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1, impl='cuda'):
    """Upsample, pad, FIR-filter and downsample a batch of images [N,C,H,W].

    `up`/`down`: int or [x, y]; `padding`: int, [x, y] or [x0, x1, y0, y1] (negative crops);
    `f`: from `setup_filter` (None = identity). Output width: (W*up + x0 + x1 - fw) // down + 1.

    Example:
        >>> f = setup_filter([1, 3, 3, 1])
        >>> y = upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], gain=4)    # [N,C,2H,2W]
    """
    assert isinstance(x, torch.Tensor)
    assert impl in ['ref', 'cuda'], f'upfirdn2d: impl must be "ref" or "cuda", got {impl!r}'
    if impl == 'cuda' and x.device.type == 'cuda' and (f is None or not f.requires_grad) and _init():
        return _upfirdn2d_cuda(up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain).apply(x, f)
    return _upfirdn2d_ref(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)

#----------------------------------------------------------------------------

def _upfirdn2d_ref(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    """Reference implementation with standard PyTorch ops (any device, any order of derivative)."""
    assert isinstance(x, torch.Tensor) and x.ndim == 4, 'upfirdn2d: x must be a 4-D tensor [N,C,H,W]'
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    assert isinstance(f, torch.Tensor) and f.ndim in [1, 2], 'upfirdn2d: f must be a 1-D or 2-D tensor'
    N, C, H, W = x.shape
    upx, upy = _parse_scaling(up, 'up')
    downx, downy = _parse_scaling(down, 'down')
    padx0, padx1, pady0, pady1 = _parse_padding(padding)

    # 1. Zero insertion: every sample is followed by up-1 zeros.
    if upx > 1 or upy > 1:
        x = x.reshape([N, C, H, 1, W, 1])
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape([N, C, H * upy, W * upx])

    # 2. Pad with zeros, crop where the padding is negative.
    x = F.pad(x, [max(padx0, 0), max(padx1, 0), max(pady0, 0), max(pady1, 0)])
    x = x[:, :, max(-pady0, 0) : x.shape[2] - max(-pady1, 0), max(-padx0, 0) : x.shape[3] - max(-padx1, 0)]

    # 3. Valid FIR filtering. F.conv2d correlates, so a true convolution flips the filter first.
    #    (A separable filter gets the whole gain in its first pass: gain^(1/2) twice fails for gain < 0.)
    f = f.to(dtype=x.dtype, device=x.device)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, (f * gain).expand(C, 1, *f.shape), groups=C)
    else:
        x = F.conv2d(x, (f * gain).reshape(1, 1, 1, -1).expand(C, 1, 1, f.shape[0]), groups=C)
        x = F.conv2d(x, f.reshape(1, 1, -1, 1).expand(C, 1, f.shape[0], 1), groups=C)

    # 4. Decimation.
    return x[:, :, ::downy, ::downx]

#----------------------------------------------------------------------------

_upfirdn2d_cuda_cache = dict()

def _upfirdn2d_cuda(up=1, down=1, padding=0, flip_filter=False, gain=1):
    """autograd.Function class running the CUDA kernel for one parameter tuple (cached)."""
    upx, upy = _parse_scaling(up, 'up')
    downx, downy = _parse_scaling(down, 'down')
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    key = (upx, upy, downx, downy, padx0, padx1, pady0, pady1, bool(flip_filter), float(gain))
    if key not in _upfirdn2d_cuda_cache:
        _upfirdn2d_cuda_cache[key] = _make_cuda_function(*key)
    return _upfirdn2d_cuda_cache[key]

def _make_cuda_function(upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip_filter, gain):

    class Upfirdn2dCuda(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, f):
            assert isinstance(x, torch.Tensor) and x.ndim == 4
            if f is None:
                f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
            assert isinstance(f, torch.Tensor) and f.ndim in [1, 2]
            f = f.to(torch.float32)
            if f.ndim == 2:
                y = _plugin.upfirdn2d(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1, flip_filter, gain)
            else:
                # Separable: one pass along x (1-row filter), one along y (1-column filter).
                y = _plugin.upfirdn2d(x, f.unsqueeze(0), upx, 1, downx, 1, padx0, padx1, 0, 0, flip_filter, gain)
                y = _plugin.upfirdn2d(y, f.unsqueeze(1), 1, upy, 1, downy, 0, 0, pady0, pady1, flip_filter, 1.0)
            ctx.save_for_backward(f)
            ctx.x_shape = x.shape
            return y

        @staticmethod
        def backward(ctx, dy):
            f, = ctx.saved_tensors
            dx = None
            if ctx.needs_input_grad[0]:
                params = _adjoint_params(ctx.x_shape, dy.shape, f, upx, upy, downx, downy, padx0, pady0, flip_filter)
                dx = _upfirdn2d_cuda(**params, gain=gain).apply(dy, f)
            return dx, None

    return Upfirdn2dCuda

#----------------------------------------------------------------------------

def _adjoint_params(x_shape, y_shape, f, upx, upy, downx, downy, padx0, pady0, flip_filter):
    """upfirdn2d arguments of the adjoint (the gradient with respect to x) of one upfirdn2d call.

    The adjoint of (zero-insert by up, pad, filter, decimate by down) is (zero-insert by down, pad,
    filter with the flipped filter, decimate by up); the pads align the taps and restore x's size.
    """
    _, _, in_h, in_w = x_shape
    _, _, out_h, out_w = y_shape
    fw, fh = _get_filter_size(f)
    padding = [
        fw - padx0 - 1,
        in_w * upx - out_w * downx + padx0 - upx + 1,
        fh - pady0 - 1,
        in_h * upy - out_h * downy + pady0 - upy + 1,
    ]
    return dict(up=[downx, downy], down=[upx, upy], padding=padding, flip_filter=(not flip_filter))

#----------------------------------------------------------------------------

def filter2d(x, f, padding=0, flip_filter=False, gain=1, impl='cuda'):
    """Filter a batch of images with `f`; the output has the input's size (plus `padding`).

    Example:
        >>> y = filter2d(x, setup_filter([1, 3, 3, 1]))    # [N,C,H,W] -> [N,C,H,W]
    """
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [
        padx0 + fw // 2,
        padx1 + (fw - 1) // 2,
        pady0 + fh // 2,
        pady1 + (fh - 1) // 2,
    ]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)

def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, impl='cuda'):
    """Upsample a batch of images by `up` with filter `f` (DC gain 1); size x`up` (plus `padding`).

    Example:
        >>> y = upsample2d(x, setup_filter([1, 3, 3, 1]))  # [N,C,H,W] -> [N,C,2H,2W]
    """
    upx, upy = _parse_scaling(up, 'up')
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [
        padx0 + (fw + upx - 1) // 2,
        padx1 + (fw - upx) // 2,
        pady0 + (fh + upy - 1) // 2,
        pady1 + (fh - upy) // 2,
    ]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)

def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, impl='cuda'):
    """Downsample a batch of images by `down` with filter `f`; size /`down` (plus `padding`).

    Example:
        >>> y = downsample2d(x, setup_filter([1, 3, 3, 1]))    # [N,C,H,W] -> [N,C,H/2,W/2]
    """
    downx, downy = _parse_scaling(down, 'down')
    padx0, padx1, pady0, pady1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [
        padx0 + (fw - downx + 1) // 2,
        padx1 + (fw - downx) // 2,
        pady0 + (fh - downy + 1) // 2,
        pady1 + (fh - downy) // 2,
    ]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)

#----------------------------------------------------------------------------
