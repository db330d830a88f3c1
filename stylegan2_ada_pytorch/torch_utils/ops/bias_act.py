"""Fused bias + activation + gain + clamp, the nonlinearity of every StyleGAN2 layer.

StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN", appendix B)
scales the output of each activation so that it preserves the signal magnitude (`def_gain`, e.g.
sqrt(2) for leaky ReLU); StyleGAN2-ADA adds the `clamp` used with mixed precision.

`impl='cuda'` runs the fused kernel of `bias_act.cu` when the tensor is on a CUDA device and the
plugin built; otherwise (and with `impl='ref'`) the pure-PyTorch reference runs. Both support first
and second order gradients (the table's `has_2nd_grad` says whether the 2nd derivative of the
activation is nonzero).

Shape legend: x is any shape; b is [x.shape[dim]].
"""

import os

import numpy as np
import torch
import torch.nn.functional as F

from ... import dnnlib
from .. import custom_ops

#----------------------------------------------------------------------------
# func: reference implementation; def_alpha/def_gain: defaults; cuda_idx: id in the kernel;
# ref: tensor the fused backward needs ('x' input, 'y' output, '' none); has_2nd_grad: 2nd derivative != 0.

activation_funcs = {
    'linear':   dnnlib.EasyDict(func=lambda x, **_:        x,                                      def_alpha=0,    def_gain=1,          cuda_idx=1, ref='',  has_2nd_grad=False),
    'relu':     dnnlib.EasyDict(func=lambda x, **_:        F.relu(x),                              def_alpha=0,    def_gain=np.sqrt(2), cuda_idx=2, ref='y', has_2nd_grad=False),
    'lrelu':    dnnlib.EasyDict(func=lambda x, alpha, **_: F.leaky_relu(x, alpha),                 def_alpha=0.2,  def_gain=np.sqrt(2), cuda_idx=3, ref='y', has_2nd_grad=False),
    'tanh':     dnnlib.EasyDict(func=lambda x, **_:        torch.tanh(x),                          def_alpha=0,    def_gain=1,          cuda_idx=4, ref='y', has_2nd_grad=True),
    'sigmoid':  dnnlib.EasyDict(func=lambda x, **_:        torch.sigmoid(x),                       def_alpha=0,    def_gain=1,          cuda_idx=5, ref='y', has_2nd_grad=True),
    'elu':      dnnlib.EasyDict(func=lambda x, **_:        F.elu(x),                               def_alpha=0,    def_gain=1,          cuda_idx=6, ref='y', has_2nd_grad=True),
    'selu':     dnnlib.EasyDict(func=lambda x, **_:        F.selu(x),                              def_alpha=0,    def_gain=1,          cuda_idx=7, ref='y', has_2nd_grad=True),
    'softplus': dnnlib.EasyDict(func=lambda x, **_:        F.softplus(x),                          def_alpha=0,    def_gain=1,          cuda_idx=8, ref='y', has_2nd_grad=True),
    'swish':    dnnlib.EasyDict(func=lambda x, **_:        torch.sigmoid(x) * x,                   def_alpha=0,    def_gain=np.sqrt(2), cuda_idx=9, ref='x', has_2nd_grad=True),
}

#----------------------------------------------------------------------------

_plugin = None      # None: not tried yet; False: unavailable; else the loaded extension module.
_plugin_sources = dict(module_name='bias_act_plugin', sources=['bias_act.cpp', 'bias_act.cu'], headers=['bias_act.h'],
    source_dir=os.path.dirname(__file__), extra_cuda_cflags=['--use_fast_math'])

def _init():
    """Build (once per process) and load the CUDA plugin; False if it is unavailable."""
    global _plugin
    if _plugin is None:
        _plugin = custom_ops.get_plugin(**_plugin_sources, fallback=True) or False
    return _plugin is not False

#----------------------------------------------------------------------------

def bias_act(x, b=None, dim=1, act='linear', alpha=None, gain=None, clamp=None, impl='cuda'):
    """Add `b` along `dim`, apply `act` (with `alpha`), multiply by `gain`, clamp to [-clamp, clamp].

    `alpha`/`gain` None mean the defaults of `activation_funcs[act]`; `clamp` None means no clamping.

    Example:
        >>> y = bias_act(x, b, act='lrelu')                  # lrelu(x + b, 0.2) * sqrt(2)
        >>> y = bias_act(x, b, act='lrelu', clamp=256)       # ... clamped to [-256, 256]
    """
    assert isinstance(x, torch.Tensor)
    assert impl in ['ref', 'cuda'], f'bias_act: impl must be "ref" or "cuda", got {impl!r}'
    _check_args(x, b, dim, act, clamp)
    if act == 'linear' and b is None and (gain is None or gain == 1) and clamp is None:
        return x
    if impl == 'cuda' and x.device.type == 'cuda' and _init():
        return _bias_act_cuda(dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp).apply(x, b)
    return _bias_act_ref(x=x, b=b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)

def _check_args(x, b, dim, act, clamp):
    if act not in activation_funcs:
        raise ValueError(f'bias_act: unknown act {act!r}; expected one of {sorted(activation_funcs)}')
    if clamp is not None and clamp < 0:
        raise ValueError(f'bias_act: clamp must be None or >= 0, got {clamp!r}')
    if b is not None:
        if not (0 <= dim < x.ndim):
            raise ValueError(f'bias_act: dim={dim} is out of range for a {x.ndim}-d input')
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(f'bias_act: b must have shape [{x.shape[dim]}] (x.shape[{dim}]), got {list(b.shape)}')

def _resolve(act, alpha, gain, clamp):
    spec = activation_funcs[act]
    alpha = float(alpha if alpha is not None else spec.def_alpha)
    gain = float(gain if gain is not None else spec.def_gain)
    clamp = float(clamp if clamp is not None else -1)
    return spec, alpha, gain, clamp

#----------------------------------------------------------------------------

def _bias_act_ref(x, b=None, dim=1, act='linear', alpha=None, gain=None, clamp=None):
    """Reference implementation with standard PyTorch ops (any device, any order of derivative)."""
    spec, alpha, gain, clamp = _resolve(act, alpha, gain, clamp)
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = spec.func(x, alpha=alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x

#----------------------------------------------------------------------------

_bias_act_cuda_cache = dict()

def _bias_act_cuda(dim=1, act='linear', alpha=None, gain=None, clamp=None):
    """autograd.Function class running the CUDA kernel for one parameter tuple (cached)."""
    spec, alpha, gain, clamp = _resolve(act, alpha, gain, clamp)
    key = (dim, act, alpha, gain, clamp)
    if key not in _bias_act_cuda_cache:
        _bias_act_cuda_cache[key] = _make_cuda_function(dim, spec, alpha, gain, clamp)
    return _bias_act_cuda_cache[key]

def _memory_format(x):
    return torch.channels_last if x.ndim == 4 and x.stride(1) == 1 and x.shape[1] > 1 else torch.contiguous_format

def _make_cuda_function(dim, spec, alpha, gain, clamp):
    # Kernel modes (bias_act.h): grad=0 forward; grad=1 dx = dy * d/ds; grad=2 the second-order
    # term d_dx * dy * d2/ds2. Activations with a nonzero 2nd derivative keep x (and b) so that
    # the 2nd-order term flows to them; the others differentiate from the output y.
    need_x = spec.ref == 'x' or spec.has_2nd_grad
    need_y = not need_x and (spec.ref == 'y' or clamp >= 0)
    identity = spec.cuda_idx == 1 and gain == 1 and clamp < 0
    other_dims = lambda t: [i for i in range(t.ndim) if i != dim]

    def run(x, b, xref, yref, dy, grad):
        fmt = _memory_format(x)
        empty = x.new_empty([0])
        prep = lambda t: empty if t is None else t.contiguous(memory_format=fmt)
        return _plugin.bias_act(x.contiguous(memory_format=fmt), empty if b is None else b.contiguous(),
            prep(xref), prep(yref), prep(dy), grad, dim, spec.cuda_idx, alpha, gain, clamp)

    class BiasActCuda(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, b):
            y = run(x, b, None, None, None, 0)
            ctx.save_for_backward(x if need_x else None, b if need_x else None, y if need_y else None)
            return y

        @staticmethod
        def backward(ctx, dy):
            x, b, y = ctx.saved_tensors
            dx = db = None
            if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
                dx = dy if identity else BiasActCudaGrad.apply(dy, x, b, y)
            if ctx.needs_input_grad[1]:
                db = dx.sum(other_dims(dx))
            return dx, db

    class BiasActCudaGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, dy, x, b, y):
            dx = run(dy, b, x, y, None, 1)
            ctx.save_for_backward(dy if spec.has_2nd_grad else None, x, b, y)
            return dx

        @staticmethod
        def backward(ctx, d_dx):
            dy, x, b, y = ctx.saved_tensors
            d_dy = d_x = d_b = None
            if ctx.needs_input_grad[0]:
                d_dy = BiasActCudaGrad.apply(d_dx, x, b, y)
            if spec.has_2nd_grad and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
                d_x = run(d_dx, b, x, None, dy, 2)
            if spec.has_2nd_grad and ctx.needs_input_grad[2]:
                d_b = d_x.sum(other_dims(d_x))
            return d_dy, d_x, d_b, None

    return BiasActCuda

#----------------------------------------------------------------------------
