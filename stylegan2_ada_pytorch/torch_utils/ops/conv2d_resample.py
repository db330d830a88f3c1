"""2-D convolution with optional FIR up/downsampling (StyleGAN2, Karras et al. 2020, appendix B).

Mathematically `conv2d_resample` is, per image:

  1. upsample by inserting `up - 1` zeros after every sample,
  2. pad by `padding`, plus [(fw+up-1)//2, (fw-up)//2] if up > 1, plus [(fw-down+1)//2, (fw-down)//2]
     if down > 1 (per axis, [before, after]),
  3. FIR-filter with `f * up^2` (only if up > 1),
  4. convolve with `w` (valid; correlation like `F.conv2d` if `flip_weight`, true convolution otherwise),
  5. FIR-filter with `f` and keep every `down`-th sample (only if down > 1).

All steps after the padding are linear and shift-invariant, so they are computed with cheaper
equivalent orders: a strided transposed convolution for `up`, filtering followed by a strided
convolution for `down`, and 1x1 kernels moved to the lower resolution.

Shape legend: N batch, I input channels (per group I/groups), O output channels, H/W size,
kh/kw kernel size, fh/fw filter size.
"""

import torch

from .. import misc
from . import conv2d_gradfix
from . import upfirdn2d
from .upfirdn2d import _parse_padding, _get_filter_size

#----------------------------------------------------------------------------

def conv2d_resample(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True, flip_filter=False):
    """Convolve x [N,I,H,W] with w [O,I/groups,kh,kw], upsampling or downsampling with filter f.

    Example:
        >>> f = upfirdn2d.setup_filter([1, 3, 3, 1])
        >>> y = conv2d_resample(x, w, f=f, up=2, padding=1, flip_weight=False)   # [N,O,2H,2W] for 3x3 w
        >>> y = conv2d_resample(x, w, f=f, down=2, padding=1)                    # [N,O,H/2,W/2]
    """
    assert isinstance(x, torch.Tensor) and x.ndim == 4, 'conv2d_resample: x must be a 4-D tensor [N,I,H,W]'
    assert isinstance(w, torch.Tensor) and w.ndim == 4 and w.dtype == x.dtype, 'conv2d_resample: w must be a 4-D tensor [O,I/groups,kh,kw] with the dtype of x'
    assert f is None or (isinstance(f, torch.Tensor) and f.ndim in [1, 2] and f.is_floating_point()), 'conv2d_resample: f must be None or a 1-D/2-D float tensor'
    assert isinstance(up, int) and up >= 1, f'conv2d_resample: up must be an int >= 1, got {up!r}'
    assert isinstance(down, int) and down >= 1, f'conv2d_resample: down must be an int >= 1, got {down!r}'
    assert isinstance(groups, int) and groups >= 1, f'conv2d_resample: groups must be an int >= 1, got {groups!r}'
    out_channels, in_channels_per_group, kh, kw = w.shape
    misc.assert_shape(x, [None, in_channels_per_group * groups, None, None])
    pad = _total_padding(f, up, down, padding)

    if kw == 1 and kh == 1:
        return _resample_1x1(x, w, f, up, down, pad, groups, flip_filter)
    if up > 1:
        return _resample_up(x, w, f, up, down, pad, groups, flip_weight, flip_filter)
    if down > 1:
        x = upfirdn2d.upfirdn2d(x, f, padding=pad, flip_filter=flip_filter)
        return _conv2d(x, w, stride=down, groups=groups, flip_weight=flip_weight)
    return _conv2d_padded(x, w, pad, groups, flip_weight)

#----------------------------------------------------------------------------

def _total_padding(f, up, down, padding):
    """Padding of step 2 as [x0, x1, y0, y1]."""
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    return [px0, px1, py0, py1]

def _conv2d(x, w, stride=1, padding=0, groups=1, flip_weight=True):
    if not flip_weight:
        w = w.flip([2, 3])
    return conv2d_gradfix.conv2d(x, w, stride=stride, padding=padding, groups=groups)

def _conv2d_padded(x, w, pad, groups, flip_weight):
    """Plain convolution; symmetric non-negative padding goes to the conv, anything else is explicit."""
    px0, px1, py0, py1 = pad
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv2d(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)
    x = upfirdn2d.upfirdn2d(x, None, padding=pad)
    return _conv2d(x, w, groups=groups, flip_weight=flip_weight)

#----------------------------------------------------------------------------

def _resample_1x1(x, w, f, up, down, pad, groups, flip_filter):
    """A 1x1 kernel commutes with every spatial step: run it at the lower of the two resolutions."""
    if up > 1:
        x = _conv2d(x, w, groups=groups)
        x = upfirdn2d.upfirdn2d(x, f, up=up, padding=pad, flip_filter=flip_filter, gain=up ** 2)
        if down > 1:
            x = upfirdn2d.upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x
    if down > 1:
        x = upfirdn2d.upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter)
        return _conv2d(x, w, groups=groups)
    return _conv2d_padded(x, w, pad, groups, flip_weight=True)

#----------------------------------------------------------------------------

def _resample_up(x, w, f, up, down, pad, groups, flip_weight, flip_filter):
    """Zero-insert + pad + conv as one strided transposed conv, then the FIR filter (and decimation).

    conv_transpose2d(x, v, stride=up) is the full true convolution of the zero-inserted x (without
    its trailing up-1 zeros) with v. Valid convolution after padding by [a0, a1] equals that full
    result padded/cropped by [a0 - (k-1), a1 + up - 1 - (k-1)]; the part that is a symmetric crop
    is done by the transposed conv's own `padding`, the rest by the following upfirdn2d.
    """
    out_channels, in_channels_per_group, kh, kw = w.shape
    px0, px1, py0, py1 = pad
    rx0, rx1 = px0 - (kw - 1), px1 + up - kw
    ry0, ry1 = py0 - (kh - 1), py1 + up - kh
    cx = max(0, min(-rx0, -rx1, kw - 1))
    cy = max(0, min(-ry0, -ry1, kh - 1))

    # conv_transpose2d scatters with its weight (a true convolution): flip it for correlation.
    v = w.flip([2, 3]) if flip_weight else w
    v = v.reshape(groups, out_channels // groups, in_channels_per_group, kh, kw)
    v = v.transpose(1, 2).reshape(groups * in_channels_per_group, out_channels // groups, kh, kw)
    x = conv2d_gradfix.conv_transpose2d(x, v, stride=up, padding=[cy, cx], groups=groups)

    x = upfirdn2d.upfirdn2d(x, f, padding=[rx0 + cx, rx1 + cx, ry0 + cy, ry1 + cy], flip_filter=flip_filter, gain=up ** 2)
    if down > 1:
        x = upfirdn2d.upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x

#----------------------------------------------------------------------------
