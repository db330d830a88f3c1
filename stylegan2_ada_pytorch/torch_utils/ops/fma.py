"""Fused multiply-add `a * b + c` with gradients that respect broadcasting.

Used by `modulated_conv2d` (StyleGAN2, Karras et al. 2020, section 2.2) to apply demodulation and
noise in one op: `x * dcoefs + noise`.

Shape legend: any broadcast-compatible shapes; the result has the broadcast shape.
"""

import torch

#----------------------------------------------------------------------------

def fma(a, b, c):
    """Return `a * b + c`; each gradient is summed back to the shape of its own operand.

    Example:
        >>> y = fma(x, dcoefs.reshape(N, -1, 1, 1), noise)   # [N,C,H,W] * [N,C,1,1] + [N,1,H,W]
    """
    return _FusedMultiplyAdd.apply(a, b, c)

#----------------------------------------------------------------------------

class _FusedMultiplyAdd(torch.autograd.Function):
    # Backward is written with differentiable ops, so higher-order gradients work too.

    @staticmethod
    def forward(ctx, a, b, c):
        out = torch.addcmul(c, a, b)
        ctx.save_for_backward(a, b)
        ctx.c_shape = c.shape
        return out

    @staticmethod
    def backward(ctx, dout):
        a, b = ctx.saved_tensors
        da = db = dc = None
        if ctx.needs_input_grad[0]:
            da = _sum_to_shape(dout * b, a.shape)
        if ctx.needs_input_grad[1]:
            db = _sum_to_shape(dout * a, b.shape)
        if ctx.needs_input_grad[2]:
            dc = _sum_to_shape(dout, ctx.c_shape)
        return da, db, dc

#----------------------------------------------------------------------------

def _sum_to_shape(x, shape):
    """Reduce a broadcast result `x` back to `shape` by summing the broadcast dimensions."""
    shape = tuple(shape)
    extra = x.ndim - len(shape)
    assert extra >= 0, f'fma: cannot reduce a {x.ndim}-d gradient to shape {shape}'
    if extra > 0:
        x = x.sum(dim=list(range(extra)))
    dims = [i for i, size in enumerate(shape) if size == 1 and x.shape[i] != 1]
    if dims:
        x = x.sum(dim=dims, keepdim=True)
    assert x.shape == shape
    return x

#----------------------------------------------------------------------------
