"""training/augment.py (ADA AugmentPipe) against independent references.

References: closed-form facts about Daubechies/symlet filters (orthonormality, vanishing moments,
the Daubechies magnitude response), NumPy/SciPy re-computations of the color matrices (SciPy's
Rotation for the hue rotation), np.pad(reflect) for integer translation, torch.flip/rot90 for
flips and quarter turns, scipy.ndimage for the band filter, float64 gradcheck for the
resampling path. `debug_percentile` fixes every random parameter to a known quantile, so the
expected parameters are computed here with scipy.special.erfinv.
"""

import copy
import inspect
import math

import numpy as np
import pytest
import scipy.ndimage
import scipy.special
import torch
from scipy.spatial.transform import Rotation

from stylegan2_ada_pytorch.torch_utils import persistence
from stylegan2_ada_pytorch.training import augment
from stylegan2_ada_pytorch.training.augment import AugmentPipe

#----------------------------------------------------------------------------
# train.py --augpipe specs (spec 6.3).

SPECS = dict(
    blit   = dict(xflip=1, rotate90=1, xint=1),
    geom   = dict(scale=1, rotate=1, aniso=1, xfrac=1),
    color  = dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1),
    filter = dict(imgfilter=1),
    noise  = dict(noise=1),
    cutout = dict(cutout=1),
)
SPECS['bgcfnc'] = {k: v for name in ('blit', 'geom', 'color', 'filter', 'noise', 'cutout') for k, v in SPECS[name].items()}

ATTRIBUTES = ('xflip rotate90 xint xint_max scale rotate aniso xfrac scale_std rotate_max aniso_std xfrac_std '
    'brightness contrast lumaflip hue saturation brightness_std contrast_std hue_max saturation_std imgfilter '
    'imgfilter_bands imgfilter_std noise cutout noise_std cutout_size').split() # spec 4.9 table

def _blobs(N=4, C=3, H=32, W=32, sigma=3.0, seed=0):
    """Smooth images (Gaussian blobs in the central area) that stay smooth under reflect padding."""
    rnd = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    out = np.zeros([N, C, H, W])
    for n in range(N):
        for _ in range(3):
            cx, cy = rnd.uniform(W * 0.3, W * 0.7), rnd.uniform(H * 0.3, H * 0.7)
            out[n] += rnd.uniform(-1, 1, size=[C, 1, 1]) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma ** 2))
    return torch.tensor(out, dtype=torch.float32)

def _randn(*shape, seed=0):
    return torch.tensor(np.random.RandomState(seed).randn(*shape), dtype=torch.float32)

def _erfinv(x):
    return float(scipy.special.erfinv(x))

#----------------------------------------------------------------------------
# Buffers and attributes.

def test_buffers_and_plain_attributes():
    pipe = AugmentPipe(**SPECS['bgcfnc'])
    sd = pipe.state_dict()
    assert list(sd.keys()) == ['p', 'Hz_geom', 'Hz_fbank']
    assert sd['p'].shape == () and float(sd['p']) == 1.0
    assert sd['Hz_geom'].shape == (12,) and sd['Hz_fbank'].shape == (4, 43)
    assert all(t.dtype == torch.float32 for t in sd.values())
    for name in ATTRIBUTES:
        assert hasattr(pipe, name), name
    assert pipe.imgfilter_bands == [1, 1, 1, 1] and isinstance(pipe.xflip, float)
    orig_init = type(pipe).__mro__[1].__init__ # the class under the persistence decorator
    assert [n for n in inspect.signature(orig_init).parameters][1:] == [ # NVIDIA's positional order
        'xflip', 'rotate90', 'xint', 'xint_max', 'scale', 'rotate', 'aniso', 'xfrac', 'scale_std', 'rotate_max',
        'aniso_std', 'xfrac_std', 'brightness', 'contrast', 'lumaflip', 'hue', 'saturation', 'brightness_std',
        'contrast_std', 'hue_max', 'saturation_std', 'imgfilter', 'imgfilter_bands', 'imgfilter_std', 'noise',
        'cutout', 'noise_std', 'cutout_size']
    defaults = AugmentPipe()
    assert (defaults.xint_max, defaults.scale_std, defaults.rotate_max, defaults.aniso_std, defaults.xfrac_std) == (0.125, 0.2, 1, 0.2, 0.125)
    assert (defaults.brightness_std, defaults.contrast_std, defaults.hue_max, defaults.saturation_std) == (0.2, 0.5, 1, 1)
    assert (defaults.imgfilter_std, defaults.noise_std, defaults.cutout_size) == (1, 0.1, 0.5)

def test_persistent_class_and_toolkit_source():
    pipe = AugmentPipe(xflip=1, imgfilter_bands=[1, 0, 1, 1])
    assert persistence.is_persistent(pipe)
    assert dict(pipe.init_kwargs) == dict(xflip=1, imgfilter_bands=[1, 0, 1, 1])
    clone = copy.deepcopy(pipe)
    assert clone.imgfilter_bands == [1, 0, 1, 1] and torch.equal(clone.Hz_fbank, pipe.Hz_fbank)
    src = type(pipe)._orig_module_src
    assert 'from torch_utils import misc, persistence' in src
    assert 'from torch_utils.ops import upfirdn2d, grid_sample_gradfix, conv2d_gradfix' in src
    assert 'stylegan2_ada_pytorch' not in src

#----------------------------------------------------------------------------
# Wavelet facts.

def _daubechies_power(omega, N):
    """|H(w)|^2 of every orthogonal Daubechies-N lowpass with sum(h) = sqrt(2) (closed form)."""
    c, s = np.cos(omega / 2) ** 2, np.sin(omega / 2) ** 2
    return 2 * c ** N * sum(math.comb(N - 1 + k, k) * s ** k for k in range(N))

def _dtft(h, omega, center=0.0):
    k = np.arange(len(h)) - center
    return np.exp(-1j * np.outer(omega, k)) @ np.asarray(h, dtype=np.float64)

def test_sym2_matches_closed_form():
    r3 = math.sqrt(3)
    closed = np.array([1 - r3, 3 - r3, 3 + r3, 1 + r3]) / (4 * math.sqrt(2)) # Daubechies 1988, decomposition order
    np.testing.assert_allclose(augment.wavelets['sym2'], closed, atol=1e-15)

def test_Hz_geom_is_symlet6_lowpass_normalised_to_unit_sum():
    f = AugmentPipe().Hz_geom.double().numpy()
    # The toolkit normalises the filter to DC gain 1 (setup_filter); the published taps sum to sqrt(2).
    assert abs(f.sum() - 1) < 1e-6
    h = f * math.sqrt(2)
    assert abs(h.sum() - math.sqrt(2)) < 1e-6
    for m in range(6): # orthonormal under even shifts
        assert abs(np.dot(h[: 12 - 2 * m], h[2 * m:]) - (1.0 if m == 0 else 0.0)) < 1e-6, m
    g = h[::-1] * (-1.0) ** np.arange(12) # quadrature-mirror highpass
    k = np.arange(12, dtype=np.float64)
    for p in range(6): # 6 vanishing moments
        assert abs(np.sum(g * k ** p)) < 2e-6 * max(1, 11 ** p), p
    omega = np.linspace(0, np.pi, 33)
    np.testing.assert_allclose(np.abs(_dtft(h, omega)) ** 2, _daubechies_power(omega, 6), atol=2e-6)

def test_Hz_fbank_bands_have_the_expected_frequency_responses():
    bank = AugmentPipe().Hz_fbank.double().numpy()
    omega = np.linspace(0, np.pi, 65)
    L = lambda w: _daubechies_power(w, 2) / 2           # H(z)H(1/z)/2
    B = lambda w: _daubechies_power(w + np.pi, 2) / 2   # H(-z)H(-1/z)/2
    expected = [L(omega) * L(2 * omega) * L(4 * omega), L(omega) * L(2 * omega) * B(4 * omega), L(omega) * B(2 * omega), B(omega)]
    for row, exp in zip(bank, expected):
        resp = _dtft(row, omega, center=21)
        assert np.abs(resp.imag).max() < 1e-6 # zero phase (symmetric about tap 21)
        np.testing.assert_allclose(resp.real, exp, atol=1e-6)
        np.testing.assert_allclose(row, row[::-1], atol=1e-7)
    impulse = np.zeros(43)
    impulse[21] = 1
    np.testing.assert_allclose(bank.sum(axis=0), impulse, atol=1e-6) # unit gains = identity

#----------------------------------------------------------------------------
# Shapes, p = 0, gradients.

@pytest.mark.parametrize('spec', sorted(SPECS))
@pytest.mark.parametrize('channels', [1, 3])
def test_each_group_keeps_shape_and_dtype_and_changes_images(spec, channels):
    torch.manual_seed(1)
    pipe = AugmentPipe(**SPECS[spec])
    x = _randn(4, channels, 16, 16)
    y = pipe(x)
    assert y.shape == x.shape and y.dtype == torch.float32 and torch.isfinite(y).all()
    if spec == 'color' and channels == 1:
        return # (hue/saturation need color; brightness/contrast/lumaflip can all miss 4 samples)
    assert not torch.equal(y, x) # p = 1: with 4 samples something is applied

@pytest.mark.parametrize('channels', [1, 3])
def test_p_zero_is_exact_identity(channels):
    torch.manual_seed(0)
    pipe = AugmentPipe(**SPECS['bgcfnc'])
    pipe.p.fill_(0)
    x = _randn(3, channels, 16, 16)
    assert torch.equal(pipe(x), x)

def test_gradients_flow_through_all_groups():
    torch.manual_seed(2)
    pipe = AugmentPipe(**SPECS['bgcfnc'])
    x = _randn(2, 3, 16, 16).requires_grad_(True)
    y = pipe(x, debug_percentile=0.3) # everything applied, cutout centred at 0.3
    (y * _randn(*y.shape, seed=3)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0

def test_geometric_path_gradcheck_float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        pipe = AugmentPipe(**SPECS['blit'], **SPECS['geom']).double()
        x = torch.tensor(np.random.RandomState(4).randn(1, 1, 8, 8), requires_grad=True)
        for dp in (0.3, 0.8):
            assert torch.autograd.gradcheck(lambda t: pipe(t, debug_percentile=dp), (x,), eps=1e-6, atol=1e-6, fast_mode=True)
    finally:
        torch.set_default_dtype(old)

def test_geometric_path_is_linear_with_transpose_gradient():
    pipe = AugmentPipe(**SPECS['geom'])
    x, v, u = _randn(2, 3, 16, 16, seed=5), _randn(2, 3, 16, 16, seed=6), _randn(2, 3, 16, 16, seed=7)
    x.requires_grad_(True)
    f = lambda t: pipe(t, debug_percentile=0.7)
    (f(x) * u).sum().backward() # x.grad = J^T u
    lhs = (f(v) * u).sum().item() # <J v, u>
    rhs = (v * x.grad).sum().item() # <v, J^T u>
    assert abs(lhs - rhs) < 1e-4 * max(1.0, abs(lhs))
    np.testing.assert_allclose((f(2 * v + x.detach()) - 2 * f(v) - f(x.detach())).abs().max().item(), 0, atol=1e-5)

#----------------------------------------------------------------------------
# Geometry against torch/NumPy references.

def test_xflip_gives_image_or_mirror_per_sample():
    torch.manual_seed(3)
    x = _blobs(N=16)
    y = AugmentPipe(xflip=1)(x)
    err_same = (y - x).flatten(1).abs().max(dim=1).values
    err_flip = (y - x.flip(3)).flatten(1).abs().max(dim=1).values
    best = torch.minimum(err_same, err_flip)
    assert best.max() < 0.02, best.max()
    flipped = err_flip < err_same
    assert 0 < int(flipped.sum()) < 16 # both outcomes occur (fixed seed)
    # A full flip is exactly a mirror of the pixel grid: debug_percentile > 0.5 flips every sample.
    np.testing.assert_allclose(AugmentPipe(xflip=1)(x, debug_percentile=0.9).numpy(), x.flip(3).numpy(), atol=0.02)

@pytest.mark.parametrize('dp, k', [(0.3, 1), (0.6, 2), (0.9, 3)])
def test_rotate90_matches_rot90(dp, k):
    # i = floor(4 dp) quarter turns; G_inv = rotate(+90 i): output (x, y) samples input (-y, x), which
    # is numpy/torch rot90(., i) over (H, W) with y pointing down.
    x = _blobs(N=2)
    y = AugmentPipe(rotate90=1)(x, debug_percentile=dp)
    np.testing.assert_allclose(y.numpy(), torch.rot90(x, k, dims=[2, 3]).numpy(), atol=0.02)

@pytest.mark.parametrize('dp', [0.1, 0.3, 0.75, 0.9])
def test_integer_translation_matches_reflect_roll(dp):
    x = _randn(2, 3, 16, 24) # any content, not square: translation is exact
    y = AugmentPipe(xint=1)(x, debug_percentile=dp).numpy()
    t = (dp * 2 - 1) * 0.125
    tx, ty = int(np.round(t * 24)), int(np.round(t * 16))
    assert (tx, ty) != (0, 0)
    padded = np.pad(x.numpy(), [(0, 0), (0, 0), (8, 8), (8, 8)], mode='reflect')
    ref = padded[:, :, 8 - ty : 8 - ty + 16, 8 - tx : 8 - tx + 24] # out[y, x] = in[y - ty, x - tx]
    np.testing.assert_allclose(y, ref, atol=1e-4)

def test_translation_and_rotation_are_invertible():
    x = _randn(2, 3, 16, 16)
    shift = AugmentPipe(xint=1)
    back = shift(shift(x, debug_percentile=0.9), debug_percentile=0.1) # +3 px then -3 px
    np.testing.assert_allclose(back[..., 3:-3, 3:-3].numpy(), x[..., 3:-3, 3:-3].numpy(), atol=1e-4)
    blobs = _blobs(N=2, H=48, W=48, sigma=4.0)
    rot = AugmentPipe(rotate=1)
    back = rot(rot(blobs, debug_percentile=0.6), debug_percentile=0.4) # +0.2 pi then -0.2 pi
    yy, xx = np.mgrid[0:48, 0:48] - 23.5
    disc = (xx ** 2 + yy ** 2) < 18 ** 2 # the corners were filled from reflections and cannot come back
    np.testing.assert_allclose(back.numpy()[..., disc], blobs.numpy()[..., disc], atol=0.03)
    assert (rot(blobs, debug_percentile=0.6) - blobs).abs().max() > 0.2 # the rotation did something

def test_isotropic_scaling_matches_resampled_blob():
    # A Gaussian blob at the centre, scaled by s, is a Gaussian with sigma * s.
    H = W = 48
    yy, xx = np.mgrid[0:H, 0:W] - (H - 1) / 2
    blob = lambda sigma: np.exp(-(xx ** 2 + yy ** 2) / (2 * sigma ** 2))
    dp = 0.8
    s = 2 ** (_erfinv(dp * 2 - 1) * math.sqrt(2) * 0.2)
    x = torch.tensor(blob(4.0), dtype=torch.float32)[None, None]
    y = AugmentPipe(scale=1)(x, debug_percentile=dp)[0, 0].numpy()
    np.testing.assert_allclose(y, blob(4.0 * s), atol=0.01)

#----------------------------------------------------------------------------
# Color: NumPy 4x4 matrices.

def _np_color_matrix(dp, brightness=False, contrast=False, lumaflip=False, hue=False, saturation=False, rgb=True):
    M = np.eye(4)
    v = np.array([1, 1, 1, 0]) / math.sqrt(3)
    if brightness:
        T = np.eye(4)
        T[:3, 3] = _erfinv(dp * 2 - 1) * 0.2
        M = T @ M
    if contrast:
        M = np.diag([2 ** (_erfinv(dp * 2 - 1) * 0.5)] * 3 + [1]) @ M
    if lumaflip and dp >= 0.5:
        M = (np.eye(4) - 2 * np.outer(v, v)) @ M
    if hue and rgb:
        R = np.eye(4)
        R[:3, :3] = Rotation.from_rotvec((dp * 2 - 1) * math.pi * v[:3]).as_matrix()
        M = R @ M
    if saturation and rgb:
        s = 2 ** (_erfinv(dp * 2 - 1) * math.sqrt(2) * 1.0)
        M = (np.outer(v, v) + s * (np.eye(4) - np.outer(v, v))) @ M
    return M

def _np_apply_color(x, M):
    x = x.numpy().astype(np.float64)
    if x.shape[1] == 3:
        return np.einsum('ij,njhw->nihw', M[:3, :3], x) + M[:3, 3][None, :, None, None]
    row = M[:3].mean(axis=0) # gray: equal r, g, b in, mean of r, g, b out
    return x * row[:3].sum() + row[3]

@pytest.mark.parametrize('group', ['brightness', 'contrast', 'lumaflip', 'hue', 'saturation', 'all'])
@pytest.mark.parametrize('dp', [0.2, 0.85])
@pytest.mark.parametrize('channels', [3, 1])
def test_color_matrices_match_numpy(group, dp, channels):
    flags = SPECS['color'] if group == 'all' else {group: 1}
    x = _randn(2, channels, 8, 8)
    y = AugmentPipe(**flags)(x, debug_percentile=dp).numpy()
    M = _np_color_matrix(dp, rgb=(channels == 3), **{k: True for k in flags})
    np.testing.assert_allclose(y, _np_apply_color(x, M), atol=1e-5)

def test_brightness_adds_and_contrast_scales_about_zero():
    x = _randn(2, 3, 8, 8)
    b = _erfinv(0.8 * 2 - 1) * 0.2
    np.testing.assert_allclose(AugmentPipe(brightness=1)(x, debug_percentile=0.8).numpy(), x.numpy() + b, atol=1e-6)
    c = 2 ** (_erfinv(0.8 * 2 - 1) * 0.5)
    # Images live in [-1, 1]; contrast scales about 0 (mid-gray), so the per-image mean scales too.
    np.testing.assert_allclose(AugmentPipe(contrast=1)(x, debug_percentile=0.8).numpy(), x.numpy() * c, atol=1e-6)

def test_hue_third_turn_permutes_channels_and_color_inverses():
    x = _randn(2, 3, 8, 8)
    hue = AugmentPipe(hue=1)
    y = hue(x, debug_percentile=5 / 6) # theta = 2 pi / 3 about the gray axis: r -> g -> b -> r
    np.testing.assert_allclose(y.numpy(), np.roll(x.numpy(), 1, axis=1), atol=1e-5)
    flip = AugmentPipe(lumaflip=1)
    np.testing.assert_allclose(flip(flip(x, debug_percentile=0.9), debug_percentile=0.9).numpy(), x.numpy(), atol=1e-5)
    bright = AugmentPipe(brightness=1)
    np.testing.assert_allclose(bright(bright(x, debug_percentile=0.7), debug_percentile=0.3).numpy(), x.numpy(), atol=1e-5)
    lum = x.mean(dim=1)
    np.testing.assert_allclose(flip(x, debug_percentile=0.9).mean(dim=1).numpy(), -lum.numpy(), atol=1e-5) # luma negated
    np.testing.assert_allclose(AugmentPipe(saturation=1)(x, debug_percentile=0.2).mean(dim=1).numpy(), lum.numpy(), atol=1e-5)

#----------------------------------------------------------------------------
# Filtering, noise, cutout.

def test_imgfilter_matches_scipy_separable_filter():
    dp, bands = 0.8, [1, 0, 1, 1]
    pipe = AugmentPipe(imgfilter=1, imgfilter_bands=bands)
    x = _randn(2, 3, 24, 24)
    y = pipe(x, debug_percentile=dp).numpy()
    expected_power = np.array([10, 1, 1, 1]) / 13
    gain = 2 ** (_erfinv(dp * 2 - 1) * 1.0)
    g = np.ones(4)
    for i, strength in enumerate(bands):
        t = np.ones(4)
        t[i] = gain if strength > 0 else 1
        g *= t / np.sqrt(np.sum(expected_power * t ** 2))
    kernel = g @ pipe.Hz_fbank.double().numpy()
    ref = scipy.ndimage.correlate1d(x.numpy().astype(np.float64), kernel, axis=3, mode='mirror')
    ref = scipy.ndimage.correlate1d(ref, kernel, axis=2, mode='mirror')
    np.testing.assert_allclose(y, ref, atol=1e-5)

def test_noise_level_follows_debug_percentile():
    torch.manual_seed(4)
    x = _randn(4, 3, 64, 64)
    sigma = _erfinv(0.6) * 0.1
    resid = (AugmentPipe(noise=1)(x, debug_percentile=0.6) - x).numpy()
    assert abs(resid.std() / sigma - 1) < 0.02 and abs(resid.mean()) < 0.02 * sigma # 49152 draws

@pytest.mark.parametrize('dp', [0.5, 0.3])
def test_cutout_zeroes_the_expected_rectangle(dp):
    x = _randn(2, 3, 16, 16) + 5 # no zeros in the input
    y = AugmentPipe(cutout=1)(x, debug_percentile=dp).numpy()
    coord = (np.arange(16) + 0.5) / 16
    inside = np.abs(coord - dp) < 0.25 # cutout_size 0.5 centred at (dp, dp)
    mask = ~(inside[:, None] & inside[None, :])
    np.testing.assert_array_equal(y, x.numpy() * mask)
    assert (y == 0).sum() == 2 * 3 * inside.sum() ** 2

#----------------------------------------------------------------------------
