"""`conv2d` / `conv_transpose2d` whose weight gradients can be switched off during regularisation.

R1 (Mescheder et al. 2018) and path-length regularisation (StyleGAN2, Karras et al. 2020, section
3.2) differentiate a gradient, so the convolutions must support double backward, and the first
`torch.autograd.grad` call only needs gradients with respect to the inputs. Inside
`no_weight_gradients()` the weight gradient of the wrapped ops is skipped; the input gradient (and
every derivative of it, including the one that flows back into the weight) stays exact.

Unlike the 2021 toolkit this module uses public PyTorch APIs only (`F.conv_transpose2d`,
`torch.nn.grad.conv2d_weight`), so it works on every PyTorch >= 1.8 and on any device.

Shape legend: N batch, I input channels, O output channels, H/W height/width, k kernel size.
"""

import contextlib

import torch
import torch.nn.functional as F

#----------------------------------------------------------------------------

enabled = False                     # Use the custom ops? The training loop sets this to True.
weight_gradients_disabled = False   # Skip weight gradients? Set by `no_weight_gradients()`.

@contextlib.contextmanager
def no_weight_gradients(disable=True):
    """Skip weight gradients of the wrapped convolutions while the block is active.

    Example:
        >>> with conv2d_gradfix.no_weight_gradients():
        ...     r1_grads = torch.autograd.grad(logits.sum(), [img], create_graph=True)[0]
    """
    global weight_gradients_disabled
    old = weight_gradients_disabled
    if disable:
        weight_gradients_disabled = True
    try:
        yield
    finally:
        weight_gradients_disabled = old

#----------------------------------------------------------------------------

def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Drop-in replacement for `torch.nn.functional.conv2d`."""
    if _should_use_custom_op(input):
        params = _conv_params(stride, padding, dilation, groups, output_padding=0)
        return _Conv2d.apply(input, weight, bias, params)
    return F.conv2d(input, weight, bias, stride=stride, padding=padding, dilation=dilation, groups=groups)

def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Drop-in replacement for `torch.nn.functional.conv_transpose2d`."""
    if _should_use_custom_op(input):
        params = _conv_params(stride, padding, dilation, groups, output_padding)
        return _ConvTranspose2d.apply(input, weight, bias, params)
    return F.conv_transpose2d(input, weight, bias, stride=stride, padding=padding,
        output_padding=output_padding, groups=groups, dilation=dilation)

#----------------------------------------------------------------------------

def _should_use_custom_op(input):
    assert isinstance(input, torch.Tensor)
    return bool(enabled)

def _pair(value, name):
    if isinstance(value, (list, tuple)):
        assert len(value) == 2, f'conv2d_gradfix: {name} must be an int or a pair, got {value!r}'
        return tuple(int(v) for v in value)
    return (int(value), int(value))

def _conv_params(stride, padding, dilation, groups, output_padding):
    return dict(stride=_pair(stride, 'stride'), padding=_pair(padding, 'padding'),
        dilation=_pair(dilation, 'dilation'), groups=int(groups),
        output_padding=_pair(output_padding, 'output_padding'))

def _conv_output_padding(in_shape, out_shape, weight_shape, p):
    """Output padding that makes `conv_transpose2d` of `out_shape` return exactly `in_shape`."""
    result = []
    for i in range(2):
        size = (out_shape[i + 2] - 1) * p['stride'][i] - 2 * p['padding'][i] + p['dilation'][i] * (weight_shape[i + 2] - 1) + 1
        result.append(in_shape[i + 2] - size)
    return tuple(result)

#----------------------------------------------------------------------------

class _Conv2d(torch.autograd.Function):
    # y = conv2d(x, w) + b. dx = conv_transpose2d(dy, w), dw = conv2d_weight(x, dy), db = sum(dy).
    # All three are written with differentiable ops, so the backward itself can be differentiated.

    @staticmethod
    def forward(ctx, input, weight, bias, p):
        ctx.save_for_backward(input, weight)
        ctx.p = p
        ctx.input_shape = input.shape
        return F.conv2d(input, weight, bias, stride=p['stride'], padding=p['padding'], dilation=p['dilation'], groups=p['groups'])

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        p = ctx.p
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            op = _conv_output_padding(ctx.input_shape, grad_output.shape, weight.shape, p)
            grad_input = conv_transpose2d(grad_output, weight, None, stride=p['stride'], padding=p['padding'],
                output_padding=op, groups=p['groups'], dilation=p['dilation'])
        if ctx.needs_input_grad[1] and not weight_gradients_disabled:
            grad_weight = torch.nn.grad.conv2d_weight(input, weight.shape, grad_output, stride=p['stride'],
                padding=p['padding'], dilation=p['dilation'], groups=p['groups'])
        if ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum(dim=[0, 2, 3])
        return grad_input, grad_weight, grad_bias, None

#----------------------------------------------------------------------------

class _ConvTranspose2d(torch.autograd.Function):
    # y = conv_transpose2d(x, w) + b is the adjoint of conv2d(., w), hence dx = conv2d(dy, w) and
    # dw = conv2d_weight(dy, x) with the roles of input and output swapped.

    @staticmethod
    def forward(ctx, input, weight, bias, p):
        ctx.save_for_backward(input, weight)
        ctx.p = p
        return F.conv_transpose2d(input, weight, bias, stride=p['stride'], padding=p['padding'],
            output_padding=p['output_padding'], groups=p['groups'], dilation=p['dilation'])

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        p = ctx.p
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = conv2d(grad_output, weight, None, stride=p['stride'], padding=p['padding'],
                dilation=p['dilation'], groups=p['groups'])
        if ctx.needs_input_grad[1] and not weight_gradients_disabled:
            grad_weight = torch.nn.grad.conv2d_weight(grad_output, weight.shape, input, stride=p['stride'],
                padding=p['padding'], dilation=p['dilation'], groups=p['groups'])
        if ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum(dim=[0, 2, 3])
        return grad_input, grad_weight, grad_bias, None

#----------------------------------------------------------------------------
