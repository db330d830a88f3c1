"""gradstyle_plugin.eval.metrics against independent references on fixed inputs.

References and tolerances: L2 / PSNR vs a pure-Python loop and skimage.metrics.peak_signal_noise_ratio
(1e-6 relative); SSIM vs skimage.metrics.structural_similarity with the Gaussian window of Wang
et al. (1e-4 absolute: float32 vs float64); MS-SSIM vs a NumPy/SciPy implementation written here
(1e-4); LPIPS vs a float64 forward written here from the net's weights (1e-5 relative); ID cosine vs NumPy.
"""

import numpy as np
import pytest
import scipy.ndimage
import skimage.data
import skimage.metrics
import torch

from gradstyle_plugin.eval import metrics
from gradstyle_plugin.perceptual import build_lpips

#----------------------------------------------------------------------------

def _pairs(size, channels=3):
    # Real photos (skimage) and a degraded copy: blur + noise + a shift, uint8 -> [0, 1].
    rnd = np.random.RandomState(0)
    photos = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()]
    x, y = [], []
    for photo in photos:
        crop = photo[:size, :size].astype(np.float64)
        if channels == 1:
            crop = crop.mean(2, keepdims=True)
        noisy = scipy.ndimage.gaussian_filter(crop, (1.2, 1.2, 0)) + rnd.normal(0, 12, crop.shape)
        noisy = np.roll(noisy, 1, axis=1)
        x.append(np.round(crop).astype(np.uint8))
        y.append(np.clip(np.round(noisy), 0, 255).astype(np.uint8))
    return metrics.from_uint8(np.stack(x)), metrics.from_uint8(np.stack(y))

def _np(t):
    return t.permute(0, 2, 3, 1).double().numpy()

def test_l2_and_psnr_brute_force_and_skimage():
    x, y = _pairs(24)
    a, b = _np(x), _np(y)
    for i in range(len(a)):
        total, count = 0.0, 0
        for v, w in zip(a[i].ravel().tolist(), b[i].ravel().tolist()):
            total += ((2 * v - 1) - (2 * w - 1)) ** 2
            count += 1
        assert float(metrics.l2(x, y)[i]) == pytest.approx(total / count, rel=1e-6)
        assert float(metrics.psnr(x, y)[i]) == pytest.approx(skimage.metrics.peak_signal_noise_ratio(a[i], b[i], data_range=1), rel=1e-6)
    assert float(metrics.psnr(x, x)[0]) == metrics.PSNR_CAP

@pytest.mark.parametrize('channels', [1, 3])
def test_ssim_matches_skimage(channels):
    x, y = _pairs(64, channels)
    ours = metrics.ssim(x, y)
    a, b = _np(x), _np(y)
    for i in range(len(a)):
        ref = skimage.metrics.structural_similarity(a[i], b[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
            data_range=1.0, channel_axis=2)
        assert abs(float(ours[i]) - ref) < 1e-4, (i, float(ours[i]), ref)
    assert 0.2 < float(ours.min()) < 0.95   # a real, partial similarity

def _ssim_cs_np(a, b):
    # Per-channel SSIM and contrast-structure means (Gaussian 1.5, truncated to 11 taps, borders of 5 px cropped).
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    f = lambda z: scipy.ndimage.gaussian_filter(z, 1.5, truncate=3.5)
    s, cs = [], []
    for ch in range(a.shape[2]):
        u, v = a[:, :, ch], b[:, :, ch]
        mu_u, mu_v = f(u), f(v)
        var_u, var_v, cov = f(u * u) - mu_u ** 2, f(v * v) - mu_v ** 2, f(u * v) - mu_u * mu_v
        cs_map = (2 * cov + c2) / (var_u + var_v + c2)
        s_map = (2 * mu_u * mu_v + c1) / (mu_u ** 2 + mu_v ** 2 + c1) * cs_map
        s.append(s_map[5:-5, 5:-5].mean())
        cs.append(cs_map[5:-5, 5:-5].mean())
    return np.mean(s), np.mean(cs)

def _ms_ssim_np(a, b):
    out = 1.0
    for j, beta in enumerate(metrics.MS_SSIM_BETAS):
        s, cs = _ssim_cs_np(a, b)
        last = j == len(metrics.MS_SSIM_BETAS) - 1
        out *= max(s if last else cs, 0) ** beta
        h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
        a = a[:h, :w].reshape(h // 2, 2, w // 2, 2, -1).mean((1, 3))
        b = b[:h, :w].reshape(h // 2, 2, w // 2, 2, -1).mean((1, 3))
    return out

def test_ms_ssim_matches_numpy_and_needs_the_size():
    x, y = _pairs(176)
    ours = metrics.ms_ssim(x, y)
    a, b = _np(x), _np(y)
    for i in range(len(a)):
        assert abs(float(ours[i]) - _ms_ssim_np(a[i], b[i])) < 1e-4
    small = _pairs(160)
    assert metrics.ms_ssim(*small) is None

def _alex_feats(net, h):
    # AlexNet trunk by hand: conv 11/4 p2, relu, pool 3/2, conv 5 p2, relu, pool 3/2, conv 3 p1 x3 with relus; taps after each relu.
    convs = [m for m in net.net.modules() if isinstance(m, torch.nn.Conv2d)]
    conv = lambda z, k: torch.relu(torch.nn.functional.conv2d(z, convs[k].weight.double(), convs[k].bias.double(),
        stride=[4, 1, 1, 1, 1][k], padding=[2, 2, 1, 1, 1][k]))
    out = [conv(h, 0)]
    out.append(conv(torch.nn.functional.max_pool2d(out[-1], 3, 2), 1))
    out.append(conv(torch.nn.functional.max_pool2d(out[-1], 3, 2), 2))
    out.append(conv(out[-1], 3))
    out.append(conv(out[-1], 4))
    return out

def _lpips_np(net, x, y, alex=False):
    # LPIPS v0.1 by hand in float64: scale, VGG16 relu1_2 ... relu5_3, unit-normalise channels, squared
    # difference, the calibrated 1x1 weights, spatial mean, sum over the 5 layers.
    shift = torch.tensor([-.030, -.088, -.188], dtype=torch.float64).view(1, 3, 1, 1)
    scale = torch.tensor([.458, .448, .450], dtype=torch.float64).view(1, 3, 1, 1)
    convs = [m for m in net.net.modules() if isinstance(m, torch.nn.Conv2d)]
    plan = [2, 2, 3, 3, 3]                     # convs per VGG block; a 2x2 max-pool before blocks 2..5
    lins = [lin.model[-1].weight.double() for lin in net.lins]
    def feats(img):
        h = ((img.double() * 2 - 1) - shift) / scale
        if alex:
            return _alex_feats(net, h)
        out, k = [], 0
        for block, n in enumerate(plan):
            if block:
                h = torch.nn.functional.max_pool2d(h, 2)
            for _ in range(n):
                h = torch.relu(torch.nn.functional.conv2d(h, convs[k].weight.double(), convs[k].bias.double(), padding=1))
                k += 1
            out.append(h)
        return out
    total = 0
    for fx, fy, w in zip(feats(x), feats(y), lins):
        nx = fx / (fx.square().sum(1, keepdim=True).sqrt() + 1e-10)
        ny = fy / (fy.square().sum(1, keepdim=True).sqrt() + 1e-10)
        total = total + torch.nn.functional.conv2d((nx - ny).square(), w).mean([2, 3])
    return total.flatten()

def test_lpips_matches_a_hand_forward():
    torch.manual_seed(0)
    net = build_lpips('random')
    x, y = _pairs(48)
    ours = metrics.lpips(net, x, y)
    ref = _lpips_np(net, x, y)
    assert torch.allclose(ours.double(), ref, rtol=1e-5, atol=1e-7), (ours, ref)
    assert float(ours.min()) > 0
    gray = _pairs(48, channels=1)
    assert torch.allclose(metrics.lpips(net, *gray).double(), _lpips_np(net, gray[0].expand(-1, 3, -1, -1), gray[1].expand(-1, 3, -1, -1)),
        rtol=1e-5, atol=1e-7)

def test_cosine_and_fid_kid():
    rnd = np.random.RandomState(1)
    a, b = rnd.randn(5, 7), rnd.randn(5, 7)
    ref = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert np.allclose(metrics.cosine(torch.tensor(a), torch.tensor(b)).numpy(), ref, atol=1e-6)
    # FID of two Gaussian samples: |mu1 - mu2|^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)), here with diagonal covariances.
    real, gen = rnd.randn(1000, 2), rnd.randn(1000, 2) * 2 + 1
    mr, mg, vr, vg = real.mean(0), gen.mean(0), real.var(0, ddof=1), gen.var(0, ddof=1)
    expected = np.square(mr - mg).sum() + np.sum(vr + vg - 2 * np.sqrt(vr * vg))
    assert metrics.fid_kid(real, gen, kid_subsets=1)['fid'] == pytest.approx(expected, rel=0.05)      # off-diagonal covariances ~ 1/sqrt(N)
    # KID: the unbiased MMD^2 of the cubic kernel is ~0 for two samples of one law and clearly positive otherwise.
    kid_diff, kid_same = metrics.fid_kid(real[:200], gen[:200])["kid"], metrics.fid_kid(real[:200], real[200:400])["kid"]
    assert kid_diff > 10 and abs(kid_same) < 0.01 * kid_diff
    assert metrics.fid_kid(real[:1], gen[:1]) == dict(fid=None, kid=None)

def test_lpips_alexnet_matches_a_hand_forward(tmp_path):
    import torchvision
    from gradstyle_plugin.eval.scoring import lpips_backbone
    torch.manual_seed(1)
    path = str(tmp_path / 'alexnet.pth')
    torch.save(torchvision.models.alexnet().state_dict(), path)
    assert lpips_backbone(path) == 'alex' and lpips_backbone('random') == 'vgg'
    net = build_lpips(path, backbone='alex')
    x, y = _pairs(64)
    ours = metrics.lpips(net, x, y)
    assert torch.allclose(ours.double(), _lpips_np(net, x, y, alex=True), rtol=1e-5, atol=1e-7)
    assert float(ours.min()) > 0
