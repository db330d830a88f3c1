"""Tests for gradstyle_plugin/transforms.py (random perspective of multi-stage features).

References are independent NumPy code: a homography solved from the four corner pairs with
np.linalg.solve on the textbook 8x8 DLT system, and a bilinear sampler written with explicit
pixel-centre arithmetic and zero padding. The sampler's statistics are compared with torchvision's
own `RandomPerspective.get_params` (the HFGI recipe the paper cites).
"""

import numpy as np
import pytest
import torch

from gradstyle_plugin.transforms import RandomPerspective

#----------------------------------------------------------------------------
# NumPy references.

UNIT = [(-1, -1), (1, -1), (1, 1), (-1, 1)]

def _np_homography(src, dst):
    # H with H @ [x, y, 1] ~ [u, v, 1] for the corners src (x, y) -> dst (u, v).
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows.append([x, y, 1, 0, 0, 0, -x * u, -y * u]); rhs.append(u)
        rows.append([0, 0, 0, x, y, 1, -x * v, -y * v]); rhs.append(v)
    h = np.linalg.solve(np.array(rows, float), np.array(rhs, float))
    return np.append(h, 1.0).reshape(3, 3)

def _np_warp(img, hom):
    # img [C, H, W]; output pixel (i, j) at normalised (x, y) reads img at hom(x, y), bilinear, zeros outside.
    C, H, W = img.shape
    out = np.zeros_like(img, dtype=np.float64)
    for i in range(H):
        for j in range(W):
            x, y = (2 * j + 1) / W - 1, (2 * i + 1) / H - 1
            u, v, w = hom @ np.array([x, y, 1.0])
            px = ((u / w) + 1) * W / 2 - 0.5 # continuous pixel coordinates (centre of pixel k at k)
            py = ((v / w) + 1) * H / 2 - 0.5
            x0, y0 = int(np.floor(px)), int(np.floor(py))
            fx, fy = px - x0, py - y0
            for dy, wy in ((0, 1 - fy), (1, fy)):
                for dx, wx in ((0, 1 - fx), (1, fx)):
                    yy, xx = y0 + dy, x0 + dx
                    if 0 <= yy < H and 0 <= xx < W:
                        out[:, i, j] += wy * wx * img[:, yy, xx]
    return out

def _smooth_image(res, channels=2, dtype=torch.float64):
    # A smooth function sampled at the pixel centres of a res x res map (normalised coordinates).
    c = (2 * np.arange(res) + 1) / res - 1
    y, x = np.meshgrid(c, c, indexing='ij')
    chans = [np.sin(1.3 * x + 0.7 * y + k) + 0.5 * np.cos(0.9 * x * y - k) for k in range(channels)]
    return torch.tensor(np.stack(chans)[None], dtype=dtype)

#----------------------------------------------------------------------------

def test_strength_zero_is_identity():
    trans = RandomPerspective(strength=0, generator=torch.Generator().manual_seed(1))
    feats = {'b8': torch.randn(3, 5, 8, 8), 'b16': torch.randn(3, 5, 16, 16, dtype=torch.float64)}
    out = trans(feats)
    assert set(out) == set(feats)
    for key in feats:
        assert out[key].dtype == feats[key].dtype
        assert torch.equal(out[key], feats[key])

def test_known_homography_matches_numpy():
    corners = np.array([[[-0.8, -1.1], [0.9, -0.7], [1.2, 1.05], [-1.1, 0.75]],
                        [[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]])
    img = torch.randn(2, 3, 9, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    out = RandomPerspective(strength=0.3).apply({'s': img}, torch.tensor(corners))['s']
    err = 0.0
    for n in range(2):
        # The input's corners land on `corners`: the output at p reads the input at H(p), H: corners -> unit.
        ref = _np_warp(img[n].numpy(), _np_homography(corners[n], UNIT))
        err = max(err, np.abs(out[n].numpy() - ref).max())
    print(f'perspective vs NumPy bilinear warp: max abs err {err:.2e}')
    assert err < 1e-10

def test_float32_any_channels():
    corners = torch.tensor([[[-0.9, -1.05], [1.1, -0.8], [0.85, 1.0], [-1.0, 1.2]]])
    img = torch.randn(1, 7, 10, 10, generator=torch.Generator().manual_seed(3))
    out = RandomPerspective(strength=0.3).apply({'s': img}, corners)['s']
    assert out.dtype == torch.float32 and out.shape == img.shape
    ref = _np_warp(img[0].double().numpy(), _np_homography(corners[0].numpy(), UNIT))
    err = np.abs(out[0].double().numpy() - ref).max()
    print(f'float32, C=7: max abs err {err:.2e}')
    assert err < 1e-5

def test_same_warp_across_stages():
    trans = RandomPerspective(strength=0.3, p=1, mode='two-sided', generator=torch.Generator().manual_seed(4))
    lo, hi = _smooth_image(32), _smooth_image(64)
    feats = {'lo': torch.cat([lo, lo]), 'hi': torch.cat([hi, hi]),
             'lo_ones': torch.ones(2, 1, 32, 32, dtype=torch.float64), 'hi_ones': torch.ones(2, 1, 64, 64, dtype=torch.float64)}
    out = trans(feats)
    hi_down = torch.nn.functional.avg_pool2d(out['hi'], 2)                 # 2x2 mean = value at the 32-grid centre + O(h^2)
    inside = (out['lo_ones'] > 1 - 1e-9) & (torch.nn.functional.avg_pool2d(out['hi_ones'], 2) > 1 - 1e-9)
    inside = inside.expand_as(hi_down)
    assert inside.float().mean() > 0.3
    err = (hi_down - out['lo'])[inside].abs().max().item()
    other = (hi_down[1:] - out['lo'][:1])[inside[1:]].abs().max().item()  # sample 1 (hi) vs sample 0 (lo): different warps
    print(f'stage consistency: max abs diff {err:.2e} (vs a different sample\'s warp {other:.2e})')
    assert err < 0.02
    assert other > 0.1

def test_seeded_and_bounded():
    feats = {'s': torch.randn(4, 2, 8, 8, generator=torch.Generator().manual_seed(5))}
    a = RandomPerspective(0.3, p=1, generator=torch.Generator().manual_seed(7))(feats)['s']
    b = RandomPerspective(0.3, p=1, generator=torch.Generator().manual_seed(7))(feats)['s']
    c = RandomPerspective(0.3, p=1, generator=torch.Generator().manual_seed(8))(feats)['s']
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    unit = torch.tensor(UNIT, dtype=torch.float64)
    offsets = RandomPerspective(0.25, p=1, mode='two-sided', generator=torch.Generator().manual_seed(9)).sample_corners(1000) - unit
    assert offsets.abs().max() <= 0.25 and offsets.abs().max() > 0.24
    assert abs(offsets.mean().item()) < 0.02
    inward = (RandomPerspective(0.15, p=1, generator=torch.Generator().manual_seed(9)).sample_corners(1000) - unit) * -unit.sign()
    assert inward.min() >= 0 and inward.max() <= 0.15 and inward.max() > 0.149      # towards the centre only

def _torchvision_offsets(count, size, distortion_scale, p, seed):
    # Corner displacements [count, 4, 2] of torchvision's RandomPerspective in half-widths, with the
    # p coin (an unwarped input moves nothing).
    import torchvision.transforms as torchvision_transforms
    torch.manual_seed(seed)
    half = size // 2
    out = np.zeros([count, 4, 2])
    for i in range(count):
        if torch.rand(1).item() < p:
            start, end = torchvision_transforms.RandomPerspective.get_params(size, size, distortion_scale)
            out[i] = np.abs(np.array(end, float) - np.array(start, float)) / half
    return out

def test_default_sampler_matches_torchvision_random_perspective():
    # HFGI's recipe, RandomPerspective(distortion_scale=0.15, p=0.8), applied there to 256x256 residuals.
    ref = _torchvision_offsets(20000, 256, 0.15, 0.8, seed=0)
    trans = RandomPerspective(generator=torch.Generator().manual_seed(0))            # the defaults
    assert (trans.strength, trans.p, trans.mode) == (0.15, 0.8, 'inward')
    ours = ((trans.sample_corners(20000) - torch.tensor(UNIT, dtype=torch.float64)) * -torch.tensor(UNIT).sign()).numpy()
    assert ours.min() >= 0                                                           # inward only, as torchvision
    mean_ref, mean_ours = ref.mean(), ours.mean()
    unwarped_ref, unwarped_ours = (ref.reshape(-1, 8) == 0).all(1).mean(), (ours.reshape(-1, 8) == 0).all(1).mean()
    print(f'mean corner displacement (half-widths): torchvision {mean_ref:.4f}, ours {mean_ours:.4f} '
          f'({100 * (mean_ours / mean_ref - 1):+.1f}%); max {ref.max():.4f} vs {ours.max():.4f}; '
          f'unwarped fraction {unwarped_ref:.3f} vs {unwarped_ours:.3f}')
    assert abs(mean_ours / mean_ref - 1) < 0.10
    assert abs(unwarped_ours - 0.2) < 0.015 and abs(unwarped_ref - unwarped_ours) < 0.03
    assert ours.max() <= 0.15 and ref.max() <= 0.15

def test_unwarped_samples_pass_through_exactly():
    x = torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    trans = RandomPerspective(0.15, p=0.5, generator=torch.Generator().manual_seed(2))
    corners = trans.sample_corners(64)
    still = (corners == torch.tensor(UNIT, dtype=torch.float64)).flatten(1).all(1)
    assert 10 < int(still.sum()) < 54
    out = trans.apply({'s': x}, corners)['s']
    assert torch.equal(out[still], x[still]) and not torch.allclose(out[~still], x[~still])
    assert torch.equal(RandomPerspective(0.15, p=0)({'s': x})['s'], x)

def test_bad_input():
    with pytest.raises(ValueError, match='strength'):
        RandomPerspective(strength=1.5)
    with pytest.raises(ValueError, match='p must be'):
        RandomPerspective(p=1.5)
    with pytest.raises(ValueError, match='mode must be'):
        RandomPerspective(mode='outward')
    with pytest.raises(ValueError, match='same batch size'):
        RandomPerspective(0.3)({'a': torch.zeros(2, 1, 4, 4), 'b': torch.zeros(3, 1, 8, 8)})

#----------------------------------------------------------------------------
