"""Tests for gradstyle_plugin/transforms.py (random perspective of multi-stage features).

References are independent NumPy code: a homography solved from the four corner pairs with
np.linalg.solve on the textbook 8x8 DLT system, and a bilinear sampler written with explicit
pixel-centre arithmetic and zero padding.
"""

import numpy as np
import pytest
import torch

from gradstyle_plugin.transforms import RandomPerspective

#----------------------------------------------------------------------------
# NumPy references.

def _np_homography(dst):
    # H with H @ [x, y, 1] ~ [u, v, 1] for the unit corners (x, y) -> dst (u, v).
    src = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
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
        ref = _np_warp(img[n].numpy(), _np_homography(corners[n]))
        err = max(err, np.abs(out[n].numpy() - ref).max())
    print(f'perspective vs NumPy bilinear warp: max abs err {err:.2e}')
    assert err < 1e-10

def test_float32_any_channels():
    corners = torch.tensor([[[-0.9, -1.05], [1.1, -0.8], [0.85, 1.0], [-1.0, 1.2]]])
    img = torch.randn(1, 7, 10, 10, generator=torch.Generator().manual_seed(3))
    out = RandomPerspective(strength=0.3).apply({'s': img}, corners)['s']
    assert out.dtype == torch.float32 and out.shape == img.shape
    ref = _np_warp(img[0].double().numpy(), _np_homography(corners[0].numpy()))
    err = np.abs(out[0].double().numpy() - ref).max()
    print(f'float32, C=7: max abs err {err:.2e}')
    assert err < 1e-5

def test_same_warp_across_stages():
    trans = RandomPerspective(strength=0.3, generator=torch.Generator().manual_seed(4))
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
    a = RandomPerspective(0.3, generator=torch.Generator().manual_seed(7))(feats)['s']
    b = RandomPerspective(0.3, generator=torch.Generator().manual_seed(7))(feats)['s']
    c = RandomPerspective(0.3, generator=torch.Generator().manual_seed(8))(feats)['s']
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    corners = RandomPerspective(0.25, generator=torch.Generator().manual_seed(9)).sample_corners(1000)
    offsets = corners - torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)
    assert offsets.abs().max() <= 0.25 and offsets.abs().max() > 0.24
    assert abs(offsets.mean().item()) < 0.02

def test_bad_input():
    with pytest.raises(ValueError, match='strength'):
        RandomPerspective(strength=1.5)
    with pytest.raises(ValueError, match='same batch size'):
        RandomPerspective(0.3)({'a': torch.zeros(2, 1, 4, 4), 'b': torch.zeros(3, 1, 8, 8)})

#----------------------------------------------------------------------------
