"""Random perspective misalignment of residual features for GradStyle's self-supervised GAM
training (section 3.4: F^_m = Trans(F_m), "random perspective transformation" of Wang et al. 2022).

Each sample gets ONE random homography in normalised image coordinates ([-1, 1] spans the whole
map, pixel centres at (2i + 1) / size - 1, i.e. grid_sample's align_corners=False convention).
The same homography is applied to every stage's map, whatever its resolution, so the stages stay
geometrically consistent with each other. Points that fall outside the map read zeros.

The warp: the output at normalised position p shows the input at H(p), where H maps the corners
(-1,-1), (1,-1), (1,1), (-1,1) to the same corners moved by independent uniform offsets in
[-strength, strength] per coordinate (strength 1 = half the map size).

Shape letters: N batch, C channels, H W height width.
"""

import torch

from stylegan2_ada_pytorch.torch_utils import misc

#----------------------------------------------------------------------------

UNIT_CORNERS = ((-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)) # (x, y): top-left, top-right, bottom-right, bottom-left.

def homography_from_corners(corners):
    """Homographies [N, 3, 3] (float64) mapping UNIT_CORNERS to `corners` [N, 4, 2] (x, y)."""
    corners = torch.as_tensor(corners, dtype=torch.float64)
    misc.assert_shape(corners, [None, 4, 2])
    src = torch.tensor(UNIT_CORNERS, dtype=torch.float64)
    N = corners.shape[0]
    A = corners.new_zeros([N, 8, 8])
    for i in range(4):
        x, y = float(src[i, 0]), float(src[i, 1])
        u, v = corners[:, i, 0], corners[:, i, 1]
        A[:, 2 * i, 0:3] = torch.tensor([x, y, 1.0], dtype=torch.float64)
        A[:, 2 * i, 6] = -x * u
        A[:, 2 * i, 7] = -y * u
        A[:, 2 * i + 1, 3:6] = torch.tensor([x, y, 1.0], dtype=torch.float64)
        A[:, 2 * i + 1, 6] = -x * v
        A[:, 2 * i + 1, 7] = -y * v
    rhs = corners.reshape(N, 8)
    h = torch.linalg.solve(A, rhs)                                          # [N8]
    return torch.cat([h, h.new_ones([N, 1])], dim=1).reshape(N, 3, 3)

def warp_perspective(x, homography):
    """Bilinear warp of x [N, C, H, W]: output at normalised p = input at homography[n](p); zeros outside."""
    misc.assert_shape(x, [None, None, None, None])
    N, _C, H, W = x.shape
    misc.assert_shape(homography, [N, 3, 3])
    hom = homography.to(device=x.device, dtype=torch.float64)
    ys = (2 * torch.arange(H, device=x.device, dtype=torch.float64) + 1) / H - 1
    xs = (2 * torch.arange(W, device=x.device, dtype=torch.float64) + 1) / W - 1
    gy, gx = torch.meshgrid(ys, xs, indexing='ij')
    points = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(1, H * W, 3)
    mapped = points @ hom.transpose(1, 2)                                   # [N, H*W, 3]
    grid = (mapped[..., :2] / mapped[..., 2:]).reshape(N, H, W, 2)
    return torch.nn.functional.grid_sample(x, grid.to(x.dtype), mode='bilinear', padding_mode='zeros', align_corners=False)

#----------------------------------------------------------------------------

class RandomPerspective:
    """Apply one random perspective per sample to a dict of stage features {stage: [N, C, H, W]}.

    strength 0 returns the input tensors unchanged. With a seeded `generator` the warps are
    reproducible (the offsets are drawn on the CPU in float64, one [N, 4, 2] draw per call).

    Example:
        >>> trans = RandomPerspective(strength=0.3, generator=torch.Generator().manual_seed(0))
        >>> F_hat = trans({'b16': F16, 'b32': F32})     # same warp (per sample) at both stages
    """

    def __init__(self,
        strength    = 0.3,          # Maximum corner offset, in units of half the map size.
        generator   = None,         # torch.Generator (CPU) for the offsets; None = global RNG.
    ):
        if not 0 <= strength < 1:
            raise ValueError(f'RandomPerspective: strength must be in [0, 1), got {strength!r}')
        self.strength = float(strength)
        self.generator = generator

    def sample_corners(self, batch_size):
        """Random moved corners [N, 4, 2] (float64, CPU)."""
        offsets = torch.rand([batch_size, 4, 2], generator=self.generator, dtype=torch.float64) * 2 - 1
        return torch.tensor(UNIT_CORNERS, dtype=torch.float64) + offsets * self.strength

    def apply(self, feats, corners):
        """Warp every stage of `feats` with the homographies given by `corners` [N, 4, 2]."""
        hom = homography_from_corners(corners)
        return {stage: warp_perspective(x, hom) for stage, x in feats.items()}

    def __call__(self, feats):
        if not isinstance(feats, dict) or not feats:
            raise ValueError('RandomPerspective: expected a non-empty dict {stage: tensor [N, C, H, W]}')
        sizes = {stage: x.shape[0] for stage, x in feats.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f'RandomPerspective: all stages need the same batch size, got {sizes}')
        if self.strength == 0:
            return dict(feats)
        return self.apply(feats, self.sample_corners(next(iter(sizes.values()))))

#----------------------------------------------------------------------------
