"""Bilinear `grid_sample` that supports double backward on every PyTorch version.

The augmentation pipeline of StyleGAN2-ADA (Karras et al. 2020, "Training Generative Adversarial
Networks with Limited Data", appendix B) resamples images with `grid_sample`, and R1 then
differentiates through it twice. PyTorch >= 1.11 has no derivative for `grid_sampler_2d_backward`,
so when `enabled` the sampling is expressed here with gathers and products, which autograd can
differentiate to any order, with respect to both the input and the grid.

Semantics are those of `F.grid_sample(input, grid, mode='bilinear', padding_mode='zeros',
align_corners=False)`.

Shape legend: N batch, C channels, H/W input size, h/w output size; grid is [N, h, w, 2] with
(x, y) in [-1, 1].
"""

import torch
import torch.nn.functional as F

from .. import misc

#----------------------------------------------------------------------------

enabled = False     # Use the double-backward-able version? The training loop sets this to True.

def grid_sample(input, grid):
    """Bilinear sampling of `input` [N,C,H,W] at `grid` [N,h,w,2]; zero padding, align_corners=False.

    Example:
        >>> grid = F.affine_grid(theta, [N, C, H, W], align_corners=False)
        >>> out = grid_sample_gradfix.grid_sample(images, grid)     # [N, C, H, W]
    """
    if _should_use_custom_op(input):
        return _grid_sample_bilinear(input, grid)
    return F.grid_sample(input=input, grid=grid, mode='bilinear', padding_mode='zeros', align_corners=False)

def _should_use_custom_op(input):
    assert isinstance(input, torch.Tensor)
    return bool(enabled)

#----------------------------------------------------------------------------

def _grid_sample_bilinear(input, grid):
    N, C, H, W = input.shape
    misc.assert_shape(grid, [N, None, None, 2])
    h, w = grid.shape[1], grid.shape[2]
    grid = grid.to(torch.promote_types(grid.dtype, torch.float32))    # Pixel coordinates need >= fp32 precision.

    # Pixel coordinates with align_corners=False: -1 is the left edge of pixel 0, +1 the right edge of pixel W-1.
    px = ((grid[..., 0] + 1) * W - 1) / 2                       # [N, h, w]
    py = ((grid[..., 1] + 1) * H - 1) / 2
    x0 = torch.floor(px).detach()
    y0 = torch.floor(py).detach()
    fx = px - x0                                                # Weight of the right neighbour.
    fy = py - y0                                                # Weight of the lower neighbour.

    flat = input.reshape(N, C, H * W)
    out = None
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi = x0 + dx
            yi = y0 + dy
            inside = (xi >= 0) & (xi <= W - 1) & (yi >= 0) & (yi <= H - 1)
            index = (yi.clamp(0, H - 1) * W + xi.clamp(0, W - 1)).to(torch.int64)    # [N, h, w]
            index = index.reshape(N, 1, h * w).expand(N, C, h * w)
            values = flat.gather(2, index).reshape(N, C, h, w)
            weight = (wx * wy * inside.to(wx.dtype)).to(input.dtype).unsqueeze(1)     # [N, 1, h, w]
            term = values * weight
            out = term if out is None else out + term
    return out

#----------------------------------------------------------------------------
