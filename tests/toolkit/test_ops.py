"""Custom ops (`torch_utils.ops`) against independent references.

References are written here from the definitions in the spec (toolkit-compat.md section 5.2):
NumPy/SciPy pipelines (zero insertion, padding/cropping, scipy.signal convolution, decimation),
`scipy.signal.upfirdn`, closed-form NumPy activations, and PyTorch's own `F.conv2d` /
`F.grid_sample`. Derivatives are checked with float64 `gradcheck` / `gradgradcheck`.
Run with `-s` to see the max errors each test prints.
"""

import itertools

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F

from stylegan2_ada_pytorch.torch_utils.ops import bias_act
from stylegan2_ada_pytorch.torch_utils.ops import conv2d_gradfix
from stylegan2_ada_pytorch.torch_utils.ops import conv2d_resample
from stylegan2_ada_pytorch.torch_utils.ops import fma
from stylegan2_ada_pytorch.torch_utils.ops import grid_sample_gradfix
from stylegan2_ada_pytorch.torch_utils.ops import upfirdn2d

SQRT2 = np.sqrt(2)

@pytest.fixture(autouse=True, scope='module')
def _single_thread():
    # The tensors here are tiny; on a shared 2-core machine intra-op threads only oversubscribe it
    # (gradgradcheck runs ~10x slower with the default thread count under load).
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)

#----------------------------------------------------------------------------
# NumPy references.

def np_pad(x, pad):
    """Pad the last two axes of x by [x0, x1, y0, y1] with zeros; negative values crop."""
    x0, x1, y0, y1 = pad
    H, W = x.shape[-2:]
    out = np.zeros(x.shape[:-2] + (H + y0 + y1, W + x0 + x1))
    rows = np.arange(out.shape[-2]) - y0            # source row of every output row
    cols = np.arange(out.shape[-1]) - x0
    ri = np.nonzero((rows >= 0) & (rows < H))[0]
    ci = np.nonzero((cols >= 0) & (cols < W))[0]
    out[..., ri[:, None], ci[None, :]] = x[..., rows[ri][:, None], cols[ci][None, :]]
    return out

def np_zero_insert(x, upx, upy):
    N, C, H, W = x.shape
    out = np.zeros([N, C, H * upy, W * upx])
    out[:, :, ::upy, ::upx] = x
    return out

def np_fir_valid(x, f2, flip_filter):
    """Valid 2-D filtering of every channel: true convolution, or correlation if flip_filter."""
    op = scipy.signal.correlate2d if flip_filter else scipy.signal.convolve2d
    N, C = x.shape[:2]
    return np.stack([np.stack([op(x[n, c], f2, mode='valid') for c in range(C)]) for n in range(N)])

def np_upfirdn2d(x, f, up, down, pad, flip_filter, gain):
    """Spec 5.2: zero-insert, pad/crop, convolve (valid) with f*gain, keep every down-th sample."""
    f2 = np.outer(f, f) if f.ndim == 1 else f
    y = np_zero_insert(x, up[0], up[1])
    y = np_pad(y, pad)
    y = np_fir_valid(y, f2 * gain, flip_filter)
    return y[:, :, ::down[1], ::down[0]]

def scipy_upfirdn_separable(x, f, up, down, pad, flip_filter, gain):
    """Separable case through scipy.signal.upfirdn (full convolution), re-indexed to our padding."""
    h = f[::-1] if flip_filter else f
    fw = len(f)
    def along(x, axis, up, down, p0):
        full = scipy.signal.upfirdn(h, x, up=up, down=1, axis=axis)
        size = (x.shape[axis] * up + p0[0] + p0[1] - fw) // down + 1
        # Our pre-decimation output o equals full[o + fw - 1 - pad_before] (zero outside).
        index = np.arange(size) * down + fw - 1 - p0[0]
        valid = (index >= 0) & (index < full.shape[axis])
        out = np.take(full, np.clip(index, 0, full.shape[axis] - 1), axis=axis)
        shape = [1] * x.ndim
        shape[axis] = size
        return out * valid.reshape(shape)
    y = along(x, 3, up[0], down[0], pad[0:2])
    y = along(y, 2, up[1], down[1], pad[2:4])
    return y * gain

def to_np(t):
    return t.detach().cpu().double().numpy()

def max_err(a, b):
    return float(np.max(np.abs(to_np(a) - b))) if np.size(b) else 0.0

#----------------------------------------------------------------------------
# upfirdn2d

def _scaling(s):
    return [s, s] if isinstance(s, int) else list(s)

def _padding(p):
    if isinstance(p, int):
        return [p, p, p, p]
    return [p[0], p[0], p[1], p[1]] if len(p) == 2 else list(p)

UPDOWN = [1, 2, 3, [2, 1], [1, 3]]
PADS = [0, 2, [1, 3], [2, 0, -1, 3], [-1, 2, 3, -2]]

@pytest.mark.parametrize('up', UPDOWN)
def test_upfirdn2d_vs_numpy(up):
    rng = np.random.default_rng(1)
    x = rng.standard_normal([2, 3, 6, 7])
    worst = 0.0
    for down, padding, separable, flip_filter, gain in itertools.product(UPDOWN, PADS, [False, True], [False, True], [1, 0.5]):
        f = rng.standard_normal([5] if separable else [3, 4])
        ref = np_upfirdn2d(x, f, _scaling(up), _scaling(down), _padding(padding), flip_filter, gain)
        out = upfirdn2d.upfirdn2d(torch.tensor(x, dtype=torch.float32), torch.tensor(f, dtype=torch.float32),
            up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain, impl='ref')
        assert tuple(out.shape) == ref.shape, (up, down, padding, separable)
        worst = max(worst, max_err(out, ref))
    print(f'upfirdn2d up={up} vs NumPy: max abs err {worst:.2e}')
    assert worst < 1e-5

def test_upfirdn2d_separable_vs_scipy_upfirdn():
    rng = np.random.default_rng(2)
    x = rng.standard_normal([1, 2, 7, 5])
    worst = 0.0
    for up, down, padding, flip_filter in itertools.product([1, 2, 3], [1, 2, 3], PADS, [False, True]):
        f = rng.standard_normal([4])
        up2, down2, pad4 = _scaling(up), _scaling(down), _padding(padding)
        ref = scipy_upfirdn_separable(x, f, up2, down2, pad4, flip_filter, 1.5)
        out = upfirdn2d.upfirdn2d(torch.tensor(x), torch.tensor(f), up=up, down=down, padding=padding,
            flip_filter=flip_filter, gain=1.5, impl='ref')
        assert tuple(out.shape) == ref.shape
        worst = max(worst, max_err(out, ref))
    print(f'upfirdn2d (separable) vs scipy.signal.upfirdn: max abs err {worst:.2e}')
    assert worst < 1e-10

def test_upfirdn2d_output_size_formula():
    x = torch.zeros([1, 1, 9, 11])
    f = torch.ones([5, 3])
    for up, down, (x0, x1, y0, y1) in itertools.product([1, 2, 3], [1, 2, 3], [(0, 0, 0, 0), (3, -1, 2, 4)]):
        y = upfirdn2d.upfirdn2d(x, f, up=up, down=down, padding=[x0, x1, y0, y1])
        assert y.shape[3] == (11 * up + x0 + x1 - 3) // down + 1
        assert y.shape[2] == (9 * up + y0 + y1 - 5) // down + 1

def test_upfirdn2d_negative_gain_separable():
    x = torch.randn([1, 2, 5, 5], dtype=torch.float64)
    f = torch.tensor([1.0, 2.0, 1.0, 3.0, 1.0, 1.0, 2.0, 1.0], dtype=torch.float64)
    ref = np_upfirdn2d(to_np(x), to_np(f), [2, 2], [1, 1], [3, 4, 3, 4], False, -2.0)
    assert max_err(upfirdn2d.upfirdn2d(x, f, up=2, padding=[3, 4, 3, 4], gain=-2.0), ref) < 1e-10

def test_setup_filter():
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    assert f.dtype == torch.float32 and tuple(f.shape) == (4, 4)
    assert max_err(f, np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64) < 1e-7
    assert tuple(upfirdn2d.setup_filter([1] * 8).shape) == (8,)                     # >= 8 taps: separable
    assert tuple(upfirdn2d.setup_filter([1] * 8, separable=False).shape) == (8, 8)
    assert tuple(upfirdn2d.setup_filter(2).shape) == (1, 1)
    g = upfirdn2d.setup_filter([[1, 2], [3, 4]], flip_filter=True, gain=4)
    assert max_err(g, np.array([[4, 3], [2, 1]]) / 10 * 4) < 1e-6
    h = upfirdn2d.setup_filter([1, 2, 3, 4, 5, 6, 7, 8], gain=9)                   # 1-D: gain^(1/2)
    assert max_err(h, np.arange(1, 9) / 36 * 3) < 1e-6
    assert max_err(upfirdn2d.setup_filter([1, 2, 1], normalize=False), np.outer([1, 2, 1], [1, 2, 1])) == 0

@pytest.mark.parametrize('fw', [1, 2, 3, 4, 5])
def test_filter2d_upsample2d_downsample2d(fw):
    rng = np.random.default_rng(fw)
    x = rng.standard_normal([2, 3, 8, 8])
    f = rng.standard_normal([fw, fw])
    xt, ft = torch.tensor(x), torch.tensor(f)
    # filter2d: pads [fw//2, (fw-1)//2] -> same size.
    out = upfirdn2d.filter2d(xt, ft)
    p = [fw // 2, (fw - 1) // 2] * 2
    assert tuple(out.shape) == (2, 3, 8, 8)
    assert max_err(out, np_upfirdn2d(x, f, [1, 1], [1, 1], p, False, 1)) < 1e-10
    # upsample2d: pads [(fw+up-1)//2, (fw-up)//2], gain up^2 -> size x up.
    for up in [2, 3]:
        out = upfirdn2d.upsample2d(xt, ft, up=up)
        p = [(fw + up - 1) // 2, (fw - up) // 2] * 2
        assert tuple(out.shape) == (2, 3, 8 * up, 8 * up)
        assert max_err(out, np_upfirdn2d(x, f, [up, up], [1, 1], p, False, up * up)) < 1e-10
    # downsample2d: pads [(fw-down+1)//2, (fw-down)//2] -> size / down.
    out = upfirdn2d.downsample2d(xt, ft, down=2)
    p = [(fw - 2 + 1) // 2, (fw - 2) // 2] * 2
    assert tuple(out.shape) == (2, 3, 4, 4)
    assert max_err(out, np_upfirdn2d(x, f, [1, 1], [2, 2], p, False, 1)) < 1e-10
    # Extra user padding adds to the sizes.
    assert tuple(upfirdn2d.filter2d(xt, ft, padding=[1, 2, 0, 3]).shape) == (2, 3, 11, 11)

def test_resampling_preserves_constants():
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    x = torch.full([1, 1, 8, 8], 3.0)
    assert torch.allclose(upfirdn2d.upsample2d(x, f)[:, :, 2:-2, 2:-2], torch.tensor(3.0))     # DC gain 1
    assert torch.allclose(upfirdn2d.downsample2d(x, f)[:, :, 1:-1, 1:-1], torch.tensor(3.0))
    assert torch.allclose(upfirdn2d.filter2d(x, f)[:, :, 2:-2, 2:-2], torch.tensor(3.0))

def test_upfirdn2d_bad_arguments():
    x = torch.zeros([1, 1, 4, 4])
    with pytest.raises(AssertionError, match='impl'):
        upfirdn2d.upfirdn2d(x, None, impl='triton')
    with pytest.raises(AssertionError, match='padding'):
        upfirdn2d.upfirdn2d(x, None, padding=[1, 2, 3])
    with pytest.raises(AssertionError, match='4-D'):
        upfirdn2d.upfirdn2d(torch.zeros([4, 4]), None)

#----------------------------------------------------------------------------
# bias_act

def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))

NP_ACTS = {     # act: (numpy function of (x, alpha), def_alpha, def_gain) -- from the spec's table
    'linear':   (lambda x, a: x,                                                        0,   1),
    'relu':     (lambda x, a: np.maximum(x, 0),                                         0,   SQRT2),
    'lrelu':    (lambda x, a: np.where(x > 0, x, a * x),                                0.2, SQRT2),
    'tanh':     (lambda x, a: np.tanh(x),                                               0,   1),
    'sigmoid':  (lambda x, a: np_sigmoid(x),                                            0,   1),
    'elu':      (lambda x, a: np.where(x > 0, x, np.expm1(x)),                          0,   1),
    'selu':     (lambda x, a: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x)), 0, 1),
    'softplus': (lambda x, a: np.log1p(np.exp(x)),                                      0,   1),
    'swish':    (lambda x, a: x * np_sigmoid(x),                                        0,   SQRT2),
}
SPEC_TABLE = {  # act: (cuda_idx, ref, has_2nd_grad)
    'linear': (1, '', False), 'relu': (2, 'y', False), 'lrelu': (3, 'y', False), 'tanh': (4, 'y', True),
    'sigmoid': (5, 'y', True), 'elu': (6, 'y', True), 'selu': (7, 'y', True), 'softplus': (8, 'y', True),
    'swish': (9, 'x', True),
}

def np_bias_act(x, b, dim, act, alpha, gain, clamp):
    func, def_alpha, def_gain = NP_ACTS[act]
    alpha = def_alpha if alpha is None else alpha
    gain = def_gain if gain is None else gain
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.reshape(shape)
    y = func(x, alpha) * gain
    return y if clamp is None else np.clip(y, -clamp, clamp)

def test_activation_table():
    assert set(bias_act.activation_funcs) == set(SPEC_TABLE)
    for act, spec in bias_act.activation_funcs.items():
        _, def_alpha, def_gain = NP_ACTS[act]
        assert (spec.cuda_idx, spec.ref, spec.has_2nd_grad) == SPEC_TABLE[act]
        assert spec.def_alpha == def_alpha and abs(spec.def_gain - def_gain) < 1e-12
        assert callable(spec.func)

@pytest.mark.parametrize('act', list(NP_ACTS))
def test_bias_act_vs_numpy(act):
    rng = np.random.default_rng(3)
    worst64 = worst32 = 0.0
    for shape, dim in [([2, 5, 3, 4], 1), ([4, 6], 1), ([3, 4, 5], 2), ([5, 3], 0)]:
        x = rng.standard_normal(shape) * 3
        b = rng.standard_normal(shape[dim])
        for use_b, alpha, gain, clamp in itertools.product([True, False], [None, 0.3], [None, 0.7], [None, 0.5, 0]):
            ref = np_bias_act(x, b if use_b else None, dim, act, alpha, gain, clamp)
            for dtype in [torch.float64, torch.float32]:
                out = bias_act.bias_act(torch.tensor(x, dtype=dtype), torch.tensor(b, dtype=dtype) if use_b else None,
                    dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp, impl='cuda')     # CPU -> ref path
                assert out.dtype == dtype and tuple(out.shape) == tuple(shape)
                if dtype == torch.float64:
                    worst64 = max(worst64, max_err(out, ref))
                else:
                    worst32 = max(worst32, max_err(out, ref) / max(1.0, np.abs(ref).max()))
    print(f'bias_act {act} vs NumPy: max abs err float64 {worst64:.2e}, float32 (relative) {worst32:.2e}')
    assert worst64 < 1e-12 and worst32 < 1e-6

def test_bias_act_bad_arguments():
    x = torch.zeros([2, 3, 4])
    with pytest.raises(ValueError, match='unknown act'):
        bias_act.bias_act(x, act='gelu')
    with pytest.raises(ValueError, match=r'b must have shape \[3\]'):
        bias_act.bias_act(x, torch.zeros(4))
    with pytest.raises(ValueError, match='clamp'):
        bias_act.bias_act(x, clamp=-1)
    with pytest.raises(AssertionError, match='impl'):
        bias_act.bias_act(x, impl='fast')

#----------------------------------------------------------------------------
# conv2d_resample

def np_conv2d_resample(x, w, f, up, down, padding, groups, flip_weight, flip_filter):
    """Brute-force composition of the spec's definition (section 5.2)."""
    O, Ig, kh, kw = w.shape
    f2 = np.ones([1, 1]) if f is None else f
    fh, fw = f2.shape
    px0, px1, py0, py1 = _padding(padding)
    if up > 1:
        px0, px1, py0, py1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2, py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1, py0, py1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2, py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    y = np_zero_insert(x, up, up)
    y = np_pad(y, [px0, px1, py0, py1])
    if up > 1:
        y = np_fir_valid(y, f2 * up * up, flip_filter)
    N = y.shape[0]
    Og = O // groups
    op = scipy.signal.correlate2d if flip_weight else scipy.signal.convolve2d
    out = np.zeros([N, O, y.shape[2] - kh + 1, y.shape[3] - kw + 1])
    for n, o, i in itertools.product(range(N), range(O), range(Ig)):
        out[n, o] += op(y[n, (o // Og) * Ig + i], w[o, i], mode='valid')
    if down > 1:
        out = np_fir_valid(out, f2, flip_filter)[:, :, ::down, ::down]
    return out

@pytest.mark.parametrize('up,down', [(1, 1), (2, 1), (1, 2), (2, 2), (3, 1), (1, 3)])
def test_conv2d_resample_vs_numpy(up, down):
    rng = np.random.default_rng(10 * up + down)
    x = rng.standard_normal([2, 4, 7, 7])
    f = np.array([[1.0, 2.0, 3.0, 1.0]]).T @ np.array([[1.0, 3.0, 2.0, 1.0]])      # asymmetric: flip_filter matters
    worst = 0.0
    for (kh, kw), groups, flip_weight, flip_filter, padding in itertools.product(
            [(1, 1), (3, 3), (3, 2)], [1, 2], [True, False], [False, True], [0, 1, [1, 0, 2, 1]]):
        w = rng.standard_normal([6, 4 // groups, kh, kw])
        ref = np_conv2d_resample(x, w, f, up, down, padding, groups, flip_weight, flip_filter)
        out = conv2d_resample.conv2d_resample(torch.tensor(x), torch.tensor(w), f=torch.tensor(f, dtype=torch.float32),
            up=up, down=down, padding=padding, groups=groups, flip_weight=flip_weight, flip_filter=flip_filter)
        assert tuple(out.shape) == ref.shape, ((kh, kw), groups, padding)
        worst = max(worst, max_err(out, ref))
    print(f'conv2d_resample up={up} down={down} vs NumPy: max abs err {worst:.2e}')
    assert worst < 1e-5

def test_conv2d_resample_float32_and_networks_shapes():
    rng = np.random.default_rng(7)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    x = rng.standard_normal([2, 8, 8, 8])
    for up, down, k, padding, flip_weight in [(2, 1, 3, 1, False), (1, 2, 3, 1, True), (1, 2, 1, 0, True), (1, 1, 3, 1, True)]:
        w = rng.standard_normal([5, 8, k, k])
        ref = np_conv2d_resample(x, w, to_np(f), up, down, padding, 1, flip_weight, False)
        out = conv2d_resample.conv2d_resample(torch.tensor(x, dtype=torch.float32), torch.tensor(w, dtype=torch.float32),
            f=f, up=up, down=down, padding=padding, flip_weight=flip_weight)
        assert tuple(out.shape) == (2, 5, 8 * up // down, 8 * up // down)
        err = max_err(out, ref) / np.abs(ref).max()
        print(f'conv2d_resample float32 up={up} down={down} k={k}: max rel err {err:.2e}')
        assert err < 1e-5

def test_conv2d_resample_no_filter():
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal([1, 3, 6, 5]), rng.standard_normal([2, 3, 3, 3])
    out = conv2d_resample.conv2d_resample(torch.tensor(x), torch.tensor(w), padding=[2, 0, 1, 1])
    assert max_err(out, np_conv2d_resample(x, w, None, 1, 1, [2, 0, 1, 1], 1, True, False)) < 1e-10

#----------------------------------------------------------------------------
# fma

def test_fma_vs_numpy():
    rng = np.random.default_rng(4)
    for sa, sb, sc in [([2, 3, 4, 5], [2, 3, 1, 1], [2, 1, 4, 5]), ([3, 1], [4], [1]), ([4, 5], [4, 5], [4, 5]), ([5], [2, 5], [3, 2, 1])]:
        a, b, c = [rng.standard_normal(s) for s in (sa, sb, sc)]
        ta, tb, tc = [torch.tensor(v, requires_grad=True) for v in (a, b, c)]
        out = fma.fma(ta, tb, tc)
        ref = a * b + c
        assert tuple(out.shape) == ref.shape and max_err(out, ref) < 1e-12
        dy = rng.standard_normal(ref.shape)
        out.backward(torch.tensor(dy))
        for t, v, other in [(ta, a, np.broadcast_to(b, ref.shape) * dy), (tb, b, np.broadcast_to(a, ref.shape) * dy), (tc, c, dy)]:
            expected = np_sum_to(other, v.shape)
            assert tuple(t.grad.shape) == v.shape and max_err(t.grad, expected) < 1e-12

def np_sum_to(g, shape):
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and g.shape[axis] != 1:
            g = g.sum(axis=axis, keepdims=True)
    return g

def test_fma_gradcheck():
    a = torch.randn([2, 3, 4], dtype=torch.float64, requires_grad=True)
    b = torch.randn([3, 1], dtype=torch.float64, requires_grad=True)
    c = torch.randn([4], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fma.fma, (a, b, c))
    assert torch.autograd.gradgradcheck(fma.fma, (a, b, c))

#----------------------------------------------------------------------------
# Gradients of bias_act / upfirdn2d / conv2d_resample (float64 finite differences).

def _away_from_kinks(x, margin=0.05):
    return x + margin * torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

@pytest.mark.parametrize('act', list(NP_ACTS))
def test_bias_act_gradcheck(act):
    torch.manual_seed(0)
    for dim, shape, clamp in [(1, [2, 3, 4], None), (2, [2, 3, 4], 1.5), (0, [3, 5], None)]:
        x = _away_from_kinks(torch.randn(shape, dtype=torch.float64) * 2).requires_grad_(True)
        b = torch.zeros(shape[dim], dtype=torch.float64, requires_grad=True)    # zero: keeps x + b off the kinks
        fn = lambda x, b: bias_act.bias_act(x, b, dim=dim, act=act, clamp=clamp)
        assert torch.autograd.gradcheck(fn, (x, b))
        if bias_act.activation_funcs[act].has_2nd_grad:
            assert torch.autograd.gradgradcheck(fn, (x, b))

@pytest.mark.parametrize('separable', [False, True])
def test_upfirdn2d_gradcheck(separable):
    torch.manual_seed(1)
    f = torch.randn([3] if separable else [3, 2], dtype=torch.float64, requires_grad=True)
    for up, down, padding, flip_filter in [(1, 1, [1, 1, 0, 2], False), (2, 1, [2, 1, 1, 1], True), ([1, 2], [2, 1], [0, -1, 2, 1], False), (3, 2, 1, True)]:
        x = torch.randn([1, 1, 4, 4], dtype=torch.float64, requires_grad=True)
        fn = lambda x, f: upfirdn2d.upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=1.7)
        assert torch.autograd.gradcheck(fn, (x, f))
        assert torch.autograd.gradgradcheck(fn, (x, f.detach()))

def test_upfirdn2d_adjoint_params():
    """The CUDA backward runs upfirdn2d with `_adjoint_params`; check them against autograd of the ref path."""
    torch.manual_seed(2)
    for up, down, padding, flip_filter, fshape in itertools.product([1, 2, 3], [1, 2, 3], [[1, 2, 0, 3], [-1, 0, 2, -1], 0], [False, True], [[4], [3, 2]]):
        x = torch.randn([1, 1, 6, 7], dtype=torch.float64, requires_grad=True)
        f = torch.randn(fshape, dtype=torch.float64)
        y = upfirdn2d._upfirdn2d_ref(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=0.8)
        dy = torch.randn_like(y)
        dx, = torch.autograd.grad(y, x, dy)
        upx, upy = _scaling(up)
        downx, downy = _scaling(down)
        p = _padding(padding)
        params = upfirdn2d._adjoint_params(x.shape, y.shape, f, upx, upy, downx, downy, p[0], p[2], flip_filter)
        adj = upfirdn2d._upfirdn2d_ref(dy, f, gain=0.8, **params)
        assert adj.shape == dx.shape and torch.allclose(adj, dx, atol=1e-12)

def test_conv2d_resample_gradcheck():
    torch.manual_seed(3)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    for up, down, k, groups, flip_weight in [(2, 1, 3, 1, False), (1, 2, 3, 2, True), (1, 2, 1, 1, True), (2, 1, 1, 2, True), (2, 2, 2, 1, False)]:
        x = torch.randn([1, 2, 4, 4], dtype=torch.float64, requires_grad=True)
        w = torch.randn([2, 2 // groups, k, k], dtype=torch.float64, requires_grad=True)
        fn = lambda x, w: conv2d_resample.conv2d_resample(x, w, f=f, up=up, down=down, padding=k // 2, groups=groups, flip_weight=flip_weight)
        assert torch.autograd.gradcheck(fn, (x, w))
        assert torch.autograd.gradgradcheck(fn, (x, w))

#----------------------------------------------------------------------------
# conv2d_gradfix

@pytest.fixture
def gradfix_enabled(monkeypatch):
    monkeypatch.setattr(conv2d_gradfix, 'enabled', True)
    monkeypatch.setattr(grid_sample_gradfix, 'enabled', True)

def test_conv2d_gradfix_values_and_gradcheck(gradfix_enabled):
    torch.manual_seed(4)
    x = torch.randn([1, 4, 5, 4], dtype=torch.float64, requires_grad=True)
    w = torch.randn([4, 2, 3, 3], dtype=torch.float64, requires_grad=True)
    wt = torch.randn([4, 2, 3, 2], dtype=torch.float64, requires_grad=True)
    b = torch.randn([4], dtype=torch.float64, requires_grad=True)
    conv = lambda x, w, b: conv2d_gradfix.conv2d(x, w, b, stride=2, padding=[1, 0], groups=2)
    convt = lambda x, w, b: conv2d_gradfix.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1, groups=2)
    assert torch.allclose(conv(x, w, b), F.conv2d(x, w, b, stride=2, padding=[1, 0], groups=2), atol=1e-12)
    assert torch.allclose(convt(x, wt, b), F.conv_transpose2d(x, wt, b, stride=2, padding=1, output_padding=1, groups=2), atol=1e-12)
    for fn, weight in [(conv, w), (convt, wt)]:
        assert torch.autograd.gradcheck(fn, (x, weight, b))
        assert torch.autograd.gradgradcheck(fn, (x, weight, b))

def test_no_weight_gradients(gradfix_enabled):
    torch.manual_seed(5)
    x = torch.randn([2, 2, 5, 5], dtype=torch.float64, requires_grad=True)
    w = torch.randn([3, 2, 3, 3], dtype=torch.float64, requires_grad=True)
    v = torch.randn([2, 3, 5, 5], dtype=torch.float64)

    # Reference with plain F.conv2d: R1-style penalty sum(dL/dx ^ 2) differentiated w.r.t. x and w.
    gx_ref, = torch.autograd.grad((F.conv2d(x, w, padding=1).square() * v).sum(), x, create_graph=True)
    px_ref, pw_ref = torch.autograd.grad(gx_ref.square().sum(), [x, w])

    with conv2d_gradfix.no_weight_gradients():
        assert conv2d_gradfix.weight_gradients_disabled
        y = conv2d_gradfix.conv2d(x, w, padding=1)
        loss = (y.square() * v).sum()
        gx, = torch.autograd.grad(loss, x, create_graph=True)
        (y * v).sum().backward(retain_graph=True)
    assert not conv2d_gradfix.weight_gradients_disabled
    assert w.grad is None                                                      # no weight gradient...
    assert torch.allclose(x.grad, F.conv_transpose2d(v, w, padding=1), atol=1e-12)   # ...but the input gradient
    assert torch.allclose(gx, gx_ref, atol=1e-12)
    px, pw = torch.autograd.grad(gx.square().sum(), [x, w])                    # second order, outside the block
    err = max((px - px_ref).abs().max().item(), (pw - pw_ref).abs().max().item())
    print(f'no_weight_gradients: second-order max abs err vs F.conv2d {err:.2e}')
    assert err < 1e-10

    with conv2d_gradfix.no_weight_gradients():
        fn = lambda x: conv2d_gradfix.conv2d(x, w.detach(), padding=1)
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))

def test_no_weight_gradients_restores_flag():
    with pytest.raises(RuntimeError):
        with conv2d_gradfix.no_weight_gradients():
            raise RuntimeError('boom')
    assert not conv2d_gradfix.weight_gradients_disabled
    with conv2d_gradfix.no_weight_gradients(disable=False):
        assert not conv2d_gradfix.weight_gradients_disabled

#----------------------------------------------------------------------------
# grid_sample_gradfix

def np_grid_sample(x, grid):
    """Bilinear, zero padding, align_corners=False, by explicit loops."""
    N, C, H, W = x.shape
    _, h, w, _ = grid.shape
    out = np.zeros([N, C, h, w])
    for n, i, j in itertools.product(range(N), range(h), range(w)):
        px = ((grid[n, i, j, 0] + 1) * W - 1) / 2
        py = ((grid[n, i, j, 1] + 1) * H - 1) / 2
        x0, y0 = int(np.floor(px)), int(np.floor(py))
        for yy, xx in itertools.product([y0, y0 + 1], [x0, x0 + 1]):
            if 0 <= yy < H and 0 <= xx < W:
                out[n, :, i, j] += x[n, :, yy, xx] * (1 - abs(px - xx)) * (1 - abs(py - yy))
    return out

def test_grid_sample_gradfix(gradfix_enabled):
    rng = np.random.default_rng(6)
    x = rng.standard_normal([2, 3, 5, 6])
    grid = rng.uniform(-1.3, 1.3, [2, 4, 7, 2])
    out = grid_sample_gradfix.grid_sample(torch.tensor(x), torch.tensor(grid))
    err = max_err(out, np_grid_sample(x, grid))
    err_f = max_err(out, to_np(F.grid_sample(torch.tensor(x), torch.tensor(grid), mode='bilinear', padding_mode='zeros', align_corners=False)))
    print(f'grid_sample_gradfix: max abs err vs NumPy {err:.2e}, vs F.grid_sample {err_f:.2e}')
    assert err < 1e-12 and err_f < 1e-12
    xt = torch.tensor(x[:1, :2], requires_grad=True)
    gt = torch.tensor(grid[:1, :3, :3], requires_grad=True)
    assert torch.autograd.gradcheck(grid_sample_gradfix.grid_sample, (xt, gt))
    assert torch.autograd.gradgradcheck(grid_sample_gradfix.grid_sample, (xt, gt))

def test_grid_sample_gradfix_disabled_uses_torch(monkeypatch):
    monkeypatch.setattr(grid_sample_gradfix, 'enabled', False)  # the training loop turns it on process-wide
    x = torch.randn([1, 2, 4, 4])
    grid = torch.rand([1, 3, 3, 2]) * 2 - 1
    assert torch.equal(grid_sample_gradfix.grid_sample(x, grid), F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros', align_corners=False))

#----------------------------------------------------------------------------
