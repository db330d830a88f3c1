"""Random perspective misalignment of residual features for GradStyle's self-supervised GAM
training (section 3.4: F^_m = Trans(F_m), "random perspective transformation" of Wang et al. 2022).

The cited recipe is HFGI's: torchvision `RandomPerspective(distortion_scale=0.15, p=0.8)` on the
residual. Its corners move *inward only*, each coordinate by up to `distortion_scale` half-widths,
and a fraction 1 - p of the inputs stays unwarped (so the aligner also sees identity pairs, the
regime of small real edits). That is the default here (`mode='inward'`, strength 0.15, p 0.8; the
values are HFGI's, not the paper's, which gives none). `mode='two-sided'` moves the corners both
ways (an older, stronger setting of this repository: strength 0.3, p 1), kept for ablations.

Each sample gets ONE random homography in normalised image coordinates ([-1, 1] spans the whole
map, pixel centres at (2i + 1) / size - 1, i.e. grid_sample's align_corners=False convention).
The same homography is applied to every stage's map, whatever its resolution, so the stages stay
geometrically consistent with each other. (HFGI draws one warp per batch; per sample gives more
variety at the same strength.)

The warp follows torchvision's convention: the input's corners (-1,-1), (1,-1), (1,1), (-1,1)
land on the moved corners in the output, so with inward moves the content is squeezed into a
smaller quadrilateral and the output reads zeros outside it. Offsets are continuous (uniform in
[0, strength] half-widths) where torchvision draws whole pixels; at 256 px (where HFGI applies it)
the two have the same mean displacement within 1% (tests/plugin/test_transforms.py).

Shape letters: N batch, C channels, H W height width.
"""

import torch

from stylegan2_ada_pytorch.torch_utils import misc

#----------------------------------------------------------------------------

UNIT_CORNERS = ((-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)) # (x, y): top-left, top-right, bottom-right, bottom-left.
MODES = ('inward', 'two-sided')

def homography(src, dst):
    """Homographies [N, 3, 3] (float64) with H @ [x, y, 1] ~ [u, v, 1] for src -> dst, each [N, 4, 2] or [4, 2] (x, y)."""
    src = torch.as_tensor(src, dtype=torch.float64)
    dst = torch.as_tensor(dst, dtype=torch.float64)
    N = max(src.shape[0] if src.ndim == 3 else 1, dst.shape[0] if dst.ndim == 3 else 1)
    src, dst = src.expand(N, 4, 2), dst.expand(N, 4, 2)
    x, y = src[..., 0], src[..., 1]                                         # [N, 4]
    u, v = dst[..., 0], dst[..., 1]
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rows_u = torch.stack([x, y, one, zero, zero, zero, -x * u, -y * u], dim=-1)   # [N, 4, 8]
    rows_v = torch.stack([zero, zero, zero, x, y, one, -x * v, -y * v], dim=-1)
    A = torch.stack([rows_u, rows_v], dim=2).reshape(N, 8, 8)
    h = torch.linalg.solve(A, dst.reshape(N, 8))                            # [N, 8]
    return torch.cat([h, h.new_ones([N, 1])], dim=1).reshape(N, 3, 3)

def homography_from_corners(corners):
    """Homographies [N, 3, 3] mapping UNIT_CORNERS to `corners` [N, 4, 2] (x, y)."""
    return homography(torch.tensor(UNIT_CORNERS, dtype=torch.float64), corners)

def warp_perspective(x, hom):
    """Bilinear warp of x [N, C, H, W]: output at normalised p = input at hom[n](p); zeros outside."""
    misc.assert_shape(x, [None, None, None, None])
    N, _C, H, W = x.shape
    misc.assert_shape(hom, [N, 3, 3])
    hom = hom.to(device=x.device, dtype=torch.float64)
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

    A sample is warped with probability `p`; the others are returned exactly as they came.
    Strength 0 or p 0 returns the input tensors unchanged. With a seeded `generator` the warps are
    reproducible (drawn on the CPU in float64: one [N, 4, 2] offset draw, then one [N] coin draw).

    Example:
        >>> trans = RandomPerspective(strength=0.15, p=0.8, generator=torch.Generator().manual_seed(0))
        >>> F_hat = trans({'b16': F16, 'b32': F32})     # same warp (per sample) at both stages
    """

    def __init__(self,
        strength    = 0.15,         # Maximum corner offset per coordinate, in half-widths (HFGI's distortion_scale).
        p           = 0.8,          # Probability that a sample is warped (HFGI's aug_rate).
        mode        = 'inward',     # 'inward' (torchvision/HFGI) or 'two-sided' (corners move both ways).
        generator   = None,         # torch.Generator (CPU) for the draws; None = global RNG.
    ):
        if not 0 <= strength < 1:
            raise ValueError(f'RandomPerspective: strength must be in [0, 1), got {strength!r}')
        if not 0 <= p <= 1:
            raise ValueError(f'RandomPerspective: p must be in [0, 1], got {p!r}')
        if mode not in MODES:
            raise ValueError(f'RandomPerspective: mode must be one of {", ".join(MODES)}, got {mode!r}')
        self.strength = float(strength)
        self.p = float(p)
        self.mode = mode
        self.generator = generator

    def sample_corners(self, batch_size):
        """Where the input's corners land in the output, [N, 4, 2] (float64, CPU); unwarped samples keep UNIT_CORNERS."""
        unit = torch.tensor(UNIT_CORNERS, dtype=torch.float64)
        u = torch.rand([batch_size, 4, 2], generator=self.generator, dtype=torch.float64)
        offsets = -unit.sign() * u if self.mode == 'inward' else 2 * u - 1   # inward: towards the centre.
        warped = torch.rand([batch_size], generator=self.generator, dtype=torch.float64) < self.p
        return unit + offsets * self.strength * warped[:, None, None]

    def apply(self, feats, corners):
        """Warp every stage of `feats` so that the input's corners land on `corners` [N, 4, 2]."""
        corners = torch.as_tensor(corners, dtype=torch.float64)
        hom = homography(corners, torch.tensor(UNIT_CORNERS, dtype=torch.float64))    # output point -> input point
        still = (corners == torch.tensor(UNIT_CORNERS, dtype=torch.float64)).flatten(1).all(dim=1)
        out = {}
        for stage, x in feats.items():
            y = warp_perspective(x, hom)
            out[stage] = torch.where(still.to(x.device)[:, None, None, None], x, y) if bool(still.any()) else y
        return out

    def __call__(self, feats):
        if not isinstance(feats, dict) or not feats:
            raise ValueError('RandomPerspective: expected a non-empty dict {stage: tensor [N, C, H, W]}')
        sizes = {stage: x.shape[0] for stage, x in feats.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f'RandomPerspective: all stages need the same batch size, got {sizes}')
        if self.strength == 0 or self.p == 0:
            return dict(feats)
        return self.apply(feats, self.sample_corners(next(iter(sizes.values()))))

    def __repr__(self):
        return f'RandomPerspective(strength={self.strength:g}, p={self.p:g}, mode={self.mode!r})'

#----------------------------------------------------------------------------
