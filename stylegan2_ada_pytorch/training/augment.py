"""Adaptive discriminator augmentation (ADA) pipeline.

Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data", section 2 and
appendix B: every augmentation is applied to each image independently with probability p (times
its own strength), and all of them are differentiable so that D's gradients reach G.

Stages, in order:
- geometric (blit + geom): integer translation, x-flip, 90-degree rotation, isotropic and
  anisotropic scaling, pre/post rotation, fractional translation. They are composed per sample as
  one inverse 3x3 homogeneous matrix (output pixel -> input pixel, coordinates centred on the
  image) and executed once: reflect padding, 2x upsampling with the symlet-6 lowpass, bilinear
  `grid_sample`, 2x downsampling with the same lowpass;
- color: brightness, contrast, luma flip, hue rotation, saturation as one 4x4 matrix on (r, g, b, 1);
- filter: per-sample gains of 4 frequency bands (filter bank built from the symlet-2 lowpass);
- noise: additive Gaussian noise; cutout: a zeroed rectangle.

A stage whose parameters are the identity for every sample is skipped, so p = 0 returns the
input unchanged (bit-exact). `debug_percentile` in [0, 1] replaces every random draw of the enabled
augmentations by that quantile (all samples, probability ignored), for visual inspection.

Shape letters: N = batch, C = channels (1 or 3), H/W = image height/width.
"""

import numpy as np
import torch

from ..torch_utils import misc, persistence
from ..torch_utils.ops import upfirdn2d, grid_sample_gradfix, conv2d_gradfix

#----------------------------------------------------------------------------
# Orthogonal wavelet lowpass (decomposition) filters, as published by Daubechies
# ("Ten Lectures on Wavelets", 1992) and tabulated by PyWavelets (`Wavelet(name).dec_lo`).

wavelets = {
    'sym2': [-0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025],
    'sym6': [0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
             0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
             -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148],
}

def make_filter_bank(lowpass, num_bands=4):
    """Zero-phase filter bank [num_bands, taps] splitting a signal into octave bands.

    With H(z) the orthogonal lowpass, band filters are built from the power-complementary pair
    L = H(z)H(1/z)/2 and B = H(-z)H(-1/z)/2 (L + B = 1): each step stretches the existing bands by
    2 (zero insertion), multiplies them by L, and adds the new band B. Row 0 is the lowest band;
    the rows sum to the unit impulse, so unit gains leave an image unchanged.
    """
    lo = np.asarray(lowpass, dtype=np.float64)
    hi = lo * (-1.0) ** np.arange(lo.size)
    lo2 = np.convolve(lo, lo[::-1]) / 2
    hi2 = np.convolve(hi, hi[::-1]) / 2
    bank = np.ones([num_bands, 1]) * (np.arange(num_bands) == 0)[:, np.newaxis]
    for band in range(1, num_bands):
        stretched = np.zeros([num_bands, bank.shape[1] * 2 - 1])
        stretched[:, ::2] = bank
        bank = np.stack([np.convolve(row, lo2) for row in stretched])
        start = (bank.shape[1] - hi2.size) // 2
        bank[band, start : start + hi2.size] += hi2
    return bank

#----------------------------------------------------------------------------
# Batched homogeneous matrices. Entries are Python numbers or [N] tensors.

def matrix(*rows, device=None):
    """[R, C] constant, or [N, R, C] when some entry is a tensor of shape [N]."""
    assert all(len(row) == len(rows[0]) for row in rows)
    entries = [x for row in rows for x in row]
    tensors = [x for x in entries if isinstance(x, torch.Tensor)]
    if len(tensors) == 0:
        return misc.constant(np.asarray(rows), device=device)
    ref = tensors[0]
    entries = [x if isinstance(x, torch.Tensor) else misc.constant(x, shape=ref.shape, device=ref.device) for x in entries]
    return torch.stack(entries, dim=-1).reshape(ref.shape + (len(rows), -1))

def translate2d(tx, ty, **kwargs):
    return matrix([1, 0, tx], [0, 1, ty], [0, 0, 1], **kwargs)

def translate3d(tx, ty, tz, **kwargs):
    return matrix([1, 0, 0, tx], [0, 1, 0, ty], [0, 0, 1, tz], [0, 0, 0, 1], **kwargs)

def scale2d(sx, sy, **kwargs):
    return matrix([sx, 0, 0], [0, sy, 0], [0, 0, 1], **kwargs)

def scale3d(sx, sy, sz, **kwargs):
    return matrix([sx, 0, 0, 0], [0, sy, 0, 0], [0, 0, sz, 0], [0, 0, 0, 1], **kwargs)

def rotate2d(theta, **kwargs):
    c, s = torch.cos(theta), torch.sin(theta)
    return matrix([c, -s, 0], [s, c, 0], [0, 0, 1], **kwargs)

def rotate3d(v, theta, **kwargs):
    """Rotation by `theta` about the unit axis v = (vx, vy, vz) (Rodrigues' formula)."""
    vx, vy, vz = v[..., 0], v[..., 1], v[..., 2]
    c, s = torch.cos(theta), torch.sin(theta)
    cc = 1 - c
    return matrix(
        [vx * vx * cc + c,      vx * vy * cc - vz * s, vx * vz * cc + vy * s, 0],
        [vy * vx * cc + vz * s, vy * vy * cc + c,      vy * vz * cc - vx * s, 0],
        [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c,      0],
        [0, 0, 0, 1], **kwargs)

def translate2d_inv(tx, ty, **kwargs):
    return translate2d(-tx, -ty, **kwargs)

def scale2d_inv(sx, sy, **kwargs):
    return scale2d(1 / sx, 1 / sy, **kwargs)

def rotate2d_inv(theta, **kwargs):
    return rotate2d(-theta, **kwargs)

#----------------------------------------------------------------------------

@persistence.persistent_class
class AugmentPipe(torch.nn.Module):
    """The ADA augmentation pipeline; `p` (a buffer) scales every probability.

    Example (train.py's `--augpipe=bgc`, with ADA adjusting p):
        >>> pipe = AugmentPipe(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1,
        ...     brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
        >>> pipe.p.copy_(torch.as_tensor(0.2))
        >>> logits = D(pipe(images), c)                 # images: float32 [N, C, H, W] in [-1, 1]
    """

    def __init__(self,
        xflip           = 0,            # Probability multiplier for x-flip.
        rotate90        = 0,            # Probability multiplier for 90 degree rotations.
        xint            = 0,            # Probability multiplier for integer translation.
        xint_max        = 0.125,        # Range of integer translation, relative to image dimensions.
        scale           = 0,            # Probability multiplier for isotropic scaling.
        rotate          = 0,            # Probability multiplier for arbitrary rotation.
        aniso           = 0,            # Probability multiplier for anisotropic scaling.
        xfrac           = 0,            # Probability multiplier for fractional translation.
        scale_std       = 0.2,          # Log2 standard deviation of isotropic scaling.
        rotate_max      = 1,            # Range of arbitrary rotation, 1 = full circle.
        aniso_std       = 0.2,          # Log2 standard deviation of anisotropic scaling.
        xfrac_std       = 0.125,        # Standard deviation of fractional translation, relative to image dimensions.
        brightness      = 0,            # Probability multiplier for brightness.
        contrast        = 0,            # Probability multiplier for contrast.
        lumaflip        = 0,            # Probability multiplier for luma flip.
        hue             = 0,            # Probability multiplier for hue rotation.
        saturation      = 0,            # Probability multiplier for saturation.
        brightness_std  = 0.2,          # Standard deviation of brightness.
        contrast_std    = 0.5,          # Log2 standard deviation of contrast.
        hue_max         = 1,            # Range of hue rotation, 1 = full circle.
        saturation_std  = 1,            # Log2 standard deviation of saturation.
        imgfilter       = 0,            # Probability multiplier for image-space filtering.
        imgfilter_bands = [1, 1, 1, 1], # Probability multipliers for the individual frequency bands.
        imgfilter_std   = 1,            # Log2 standard deviation of the band amplifications.
        noise           = 0,            # Probability multiplier for additive RGB noise.
        cutout          = 0,            # Probability multiplier for cutout.
        noise_std       = 0.1,          # Standard deviation of additive RGB noise.
        cutout_size     = 0.5,          # Size of the cutout rectangle, relative to image dimensions.
    ):
        super().__init__()
        self.register_buffer('p', torch.ones([]))      # Overall probability multiplier (ADA adjusts it).

        self.xflip            = float(xflip)
        self.rotate90         = float(rotate90)
        self.xint             = float(xint)
        self.xint_max         = float(xint_max)
        self.scale            = float(scale)
        self.rotate           = float(rotate)
        self.aniso            = float(aniso)
        self.xfrac            = float(xfrac)
        self.scale_std        = float(scale_std)
        self.rotate_max       = float(rotate_max)
        self.aniso_std        = float(aniso_std)
        self.xfrac_std        = float(xfrac_std)
        self.brightness       = float(brightness)
        self.contrast         = float(contrast)
        self.lumaflip         = float(lumaflip)
        self.hue              = float(hue)
        self.saturation       = float(saturation)
        self.brightness_std   = float(brightness_std)
        self.contrast_std     = float(contrast_std)
        self.hue_max          = float(hue_max)
        self.saturation_std   = float(saturation_std)
        self.imgfilter        = float(imgfilter)
        self.imgfilter_bands  = list(imgfilter_bands)
        self.imgfilter_std    = float(imgfilter_std)
        self.noise            = float(noise)
        self.cutout           = float(cutout)
        self.noise_std        = float(noise_std)
        self.cutout_size      = float(cutout_size)

        # Lowpass for the geometric resampling: symlet-6, 12 taps, normalised to sum 1.
        self.register_buffer('Hz_geom', upfirdn2d.setup_filter(wavelets['sym6']))
        # Band filters for image-space filtering: [4, 43], from the symlet-2 lowpass.
        self.register_buffer('Hz_fbank', torch.as_tensor(make_filter_bank(wavelets['sym2'], 4), dtype=torch.float32))

    #------------------------------------------------------------------------
    # Random parameters.

    def _gate(self, value, prob, neutral, mask_shape=None):
        """Per sample: `value` with probability `prob`, else `neutral`."""
        shape = value.shape if mask_shape is None else mask_shape
        keep = torch.rand(shape, device=value.device) < prob
        return torch.where(keep, value, torch.full_like(value, neutral))

    def _geometric_inverse(self, N, H, W, device, dp):
        """Inverse geometric transform [N, 3, 3] in pixel units, centred on the image."""
        G_inv = matrix([1, 0, 0], [0, 1, 0], [0, 0, 1], device=device)
        if self.xflip > 0:
            i = self._gate(torch.floor(torch.rand([N], device=device) * 2), self.xflip * self.p, 0)
            i = i if dp is None else torch.full_like(i, torch.floor(dp * 2))
            G_inv = G_inv @ scale2d_inv(1 - 2 * i, 1)
        if self.rotate90 > 0:
            i = self._gate(torch.floor(torch.rand([N], device=device) * 4), self.rotate90 * self.p, 0)
            i = i if dp is None else torch.full_like(i, torch.floor(dp * 4))
            G_inv = G_inv @ rotate2d_inv(-np.pi / 2 * i)
        if self.xint > 0:
            t = self._gate((torch.rand([N, 2], device=device) * 2 - 1) * self.xint_max, self.xint * self.p, 0, [N, 1])
            t = t if dp is None else torch.full_like(t, (dp * 2 - 1) * self.xint_max)
            G_inv = G_inv @ translate2d_inv(torch.round(t[:, 0] * W), torch.round(t[:, 1] * H))
        return self._general_geometric(G_inv, N, H, W, device, dp)

    def _general_geometric(self, G_inv, N, H, W, device, dp):
        if self.scale > 0:
            s = self._gate(torch.exp2(torch.randn([N], device=device) * self.scale_std), self.scale * self.p, 1)
            s = s if dp is None else torch.full_like(s, torch.exp2(torch.erfinv(dp * 2 - 1) * np.sqrt(2) * self.scale_std))
            G_inv = G_inv @ scale2d_inv(s, s)
        p_rot = 1 - torch.sqrt((1 - self.rotate * self.p).clamp(0, 1)) # P(pre or post rotation) = rotate * p.
        if self.rotate > 0:
            theta = self._gate((torch.rand([N], device=device) * 2 - 1) * np.pi * self.rotate_max, p_rot, 0)
            theta = theta if dp is None else torch.full_like(theta, (dp * 2 - 1) * np.pi * self.rotate_max)
            G_inv = G_inv @ rotate2d_inv(-theta) # Before anisotropic scaling.
        if self.aniso > 0:
            s = self._gate(torch.exp2(torch.randn([N], device=device) * self.aniso_std), self.aniso * self.p, 1)
            s = s if dp is None else torch.full_like(s, torch.exp2(torch.erfinv(dp * 2 - 1) * np.sqrt(2) * self.aniso_std))
            G_inv = G_inv @ scale2d_inv(s, 1 / s)
        if self.rotate > 0:
            theta = self._gate((torch.rand([N], device=device) * 2 - 1) * np.pi * self.rotate_max, p_rot, 0)
            theta = theta if dp is None else torch.zeros_like(theta)
            G_inv = G_inv @ rotate2d_inv(-theta) # After anisotropic scaling.
        if self.xfrac > 0:
            t = self._gate(torch.randn([N, 2], device=device) * self.xfrac_std, self.xfrac * self.p, 0, [N, 1])
            t = t if dp is None else torch.full_like(t, torch.erfinv(dp * 2 - 1) * self.xfrac_std)
            G_inv = G_inv @ translate2d_inv(t[:, 0] * W, t[:, 1] * H)
        return G_inv

    def _color_matrix(self, N, C, device, dp):
        """Color transform [N, 4, 4] acting on (r, g, b, 1)."""
        I_4 = matrix([1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], device=device)
        M = I_4
        if self.brightness > 0:
            b = self._gate(torch.randn([N], device=device) * self.brightness_std, self.brightness * self.p, 0)
            b = b if dp is None else torch.full_like(b, torch.erfinv(dp * 2 - 1) * self.brightness_std)
            M = translate3d(b, b, b) @ M
        if self.contrast > 0:
            c = self._gate(torch.exp2(torch.randn([N], device=device) * self.contrast_std), self.contrast * self.p, 1)
            c = c if dp is None else torch.full_like(c, torch.exp2(torch.erfinv(dp * 2 - 1) * self.contrast_std))
            M = scale3d(c, c, c) @ M
        v = misc.constant(np.asarray([1, 1, 1, 0]) / np.sqrt(3), device=device) # Luma axis.
        vvT = v.unsqueeze(1) * v.unsqueeze(0)
        if self.lumaflip > 0:
            i = self._gate(torch.floor(torch.rand([N, 1, 1], device=device) * 2), self.lumaflip * self.p, 0)
            i = i if dp is None else torch.full_like(i, torch.floor(dp * 2))
            M = (I_4 - 2 * vvT * i) @ M # Householder reflection through the plane orthogonal to v.
        if self.hue > 0 and C > 1:
            theta = self._gate((torch.rand([N], device=device) * 2 - 1) * np.pi * self.hue_max, self.hue * self.p, 0)
            theta = theta if dp is None else torch.full_like(theta, (dp * 2 - 1) * np.pi * self.hue_max)
            M = rotate3d(v, theta) @ M # Rotation about the luma axis.
        if self.saturation > 0 and C > 1:
            s = self._gate(torch.exp2(torch.randn([N, 1, 1], device=device) * self.saturation_std), self.saturation * self.p, 1)
            s = s if dp is None else torch.full_like(s, torch.exp2(torch.erfinv(dp * 2 - 1) * np.sqrt(2) * self.saturation_std))
            M = (I_4 + (s - 1) * (I_4 - vvT)) @ M # = vvT + s (I - vvT): scale the chroma, keep the luma.
        return M

    def _band_gains(self, N, device, dp):
        """Per-sample gains [N, bands] of the filter bank, normalised to the expected 1/f power."""
        num_bands = self.Hz_fbank.shape[0]
        assert len(self.imgfilter_bands) == num_bands, f'imgfilter_bands must have {num_bands} entries'
        expected_power = misc.constant(np.asarray([10, 1, 1, 1]) / 13, device=device)
        g = torch.ones([N, num_bands], device=device)
        changed = torch.full([], dp is not None, device=device)
        for i, band_strength in enumerate(self.imgfilter_bands):
            t_i = self._gate(torch.exp2(torch.randn([N], device=device) * self.imgfilter_std), self.imgfilter * self.p * band_strength, 1)
            if dp is not None:
                t_i = torch.full_like(t_i, torch.exp2(torch.erfinv(dp * 2 - 1) * self.imgfilter_std)) if band_strength > 0 else torch.ones_like(t_i)
            changed = changed | (t_i != 1).any()
            t = torch.ones([N, num_bands], device=device)
            t[:, i] = t_i
            t = t / (expected_power * t.square()).sum(dim=-1, keepdim=True).sqrt() # Keep the expected power constant.
            g = g * t
        return g, bool(changed)

    #------------------------------------------------------------------------
    # Execution.

    def _resample(self, images, G_inv):
        """Apply the inverse transform G_inv [N, 3, 3] with an alias-free resampling."""
        N, C, H, W = images.shape
        Hz_pad = self.Hz_geom.shape[0] // 4
        # Reflect-pad enough to cover where the output corners (plus the filter support) land in the input.
        cx, cy = (W - 1) / 2, (H - 1) / 2
        corners = matrix([-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1], device=images.device) # [4, xyz]
        corners = G_inv @ corners.t() # [N, xyz, 4]
        reach = corners[:, :2, :].permute(1, 0, 2).flatten(1) # [xy, N*4]
        margin = torch.cat([-reach, reach]).max(dim=1).values # [x0, y0, x1, y1]
        margin = margin + misc.constant([Hz_pad * 2 - cx, Hz_pad * 2 - cy] * 2, device=images.device)
        margin = margin.max(misc.constant([0, 0] * 2, device=images.device))
        margin = margin.min(misc.constant([W - 1, H - 1] * 2, device=images.device))
        mx0, my0, mx1, my1 = [int(m) for m in margin.ceil().to(torch.int32).tolist()]
        images = torch.nn.functional.pad(input=images, pad=[mx0, mx1, my0, my1], mode='reflect')
        G_inv = translate2d((mx0 - mx1) / 2, (my0 - my1) / 2, device=images.device) @ G_inv

        # 2x upsampling; coordinates scale by 2, and the asymmetric lowpass delays the image by its
        # DC group delay d (the tap centroid minus the midpoint; -0.40 samples for symlet-6). The
        # warp is conjugated by that shift so that it acts about the true centre. (NVIDIA's release
        # uses d = -0.5; the exact d makes flips/rotations of smooth images ~10x more accurate.)
        images = upfirdn2d.upsample2d(x=images, f=self.Hz_geom, up=2)
        G_inv = scale2d(2, 2, device=images.device) @ G_inv @ scale2d_inv(2, 2, device=images.device)
        d = _group_delay(self.Hz_geom)
        G_inv = translate2d(d, d) @ G_inv @ translate2d_inv(d, d)

        # Bilinear sampling of an output with a border of Hz_pad pixels for the downsampling filter.
        shape = [N, C, (H + Hz_pad * 2) * 2, (W + Hz_pad * 2) * 2]
        G_inv = scale2d(2 / images.shape[3], 2 / images.shape[2], device=images.device) @ G_inv @ \
            scale2d_inv(2 / shape[3], 2 / shape[2], device=images.device)
        grid = torch.nn.functional.affine_grid(theta=G_inv[:, :2, :], size=shape, align_corners=False)
        images = grid_sample_gradfix.grid_sample(images, grid)

        # 2x downsampling back to [N, C, H, W].
        return upfirdn2d.downsample2d(x=images, f=self.Hz_geom, down=2, padding=-Hz_pad * 2, flip_filter=True)

    def _apply_color(self, images, M):
        N, C, H, W = images.shape
        images = images.reshape([N, C, H * W])
        if C == 3:
            images = M[:, :3, :3] @ images + M[:, :3, 3:]
        elif C == 1:
            M = M[:, :3, :].mean(dim=1, keepdim=True) # Gray in = equal r, g, b; gray out = their mean.
            images = images * M[:, :, :3].sum(dim=2, keepdim=True) + M[:, :, 3:]
        else:
            raise ValueError(f'AugmentPipe: color augmentation needs RGB (3 channels) or L (1 channel) images, got {C} channels')
        return images.reshape([N, C, H, W])

    def _apply_filter(self, images, g):
        N, C, H, W = images.shape
        Hz = g @ self.Hz_fbank # [N, taps]
        Hz = Hz.unsqueeze(1).repeat([1, C, 1]).reshape([N * C, 1, -1])
        pad = self.Hz_fbank.shape[1] // 2
        images = images.reshape([1, N * C, H, W])
        images = _reflect_pad(images, pad)
        images = conv2d_gradfix.conv2d(input=images, weight=Hz.unsqueeze(2), groups=N * C)
        images = conv2d_gradfix.conv2d(input=images, weight=Hz.unsqueeze(3), groups=N * C)
        return images.reshape([N, C, H, W])

    def _apply_noise(self, images, dp):
        N, C, H, W = images.shape
        sigma = self._gate(torch.randn([N, 1, 1, 1], device=images.device).abs() * self.noise_std, self.noise * self.p, 0)
        sigma = sigma if dp is None else torch.full_like(sigma, torch.erfinv(dp) * self.noise_std)
        return images + torch.randn([N, C, H, W], device=images.device) * sigma

    def _apply_cutout(self, images, dp):
        N, C, H, W = images.shape
        size = self._gate(torch.full([N, 2, 1, 1, 1], self.cutout_size, device=images.device), self.cutout * self.p, 0, [N, 1, 1, 1, 1])
        center = torch.rand([N, 2, 1, 1, 1], device=images.device)
        if dp is not None:
            size = torch.full_like(size, self.cutout_size)
            center = torch.full_like(center, dp)
        coord_x = torch.arange(W, device=images.device).reshape([1, 1, 1, -1])
        coord_y = torch.arange(H, device=images.device).reshape([1, 1, -1, 1])
        outside_x = (((coord_x + 0.5) / W - center[:, 0]).abs() >= size[:, 0] / 2)
        outside_y = (((coord_y + 0.5) / H - center[:, 1]).abs() >= size[:, 1] / 2)
        mask = torch.logical_or(outside_x, outside_y).to(torch.float32)
        return images * mask

    #------------------------------------------------------------------------

    def forward(self, images, debug_percentile=None):
        assert isinstance(images, torch.Tensor) and images.ndim == 4, 'AugmentPipe: images must be [N, C, H, W]'
        N, C, H, W = images.shape
        device = images.device
        dp = None if debug_percentile is None else torch.as_tensor(debug_percentile, dtype=torch.float32, device=device)

        G_inv = self._geometric_inverse(N, H, W, device, dp)
        if not bool(torch.isfinite(G_inv).all()):
            raise ValueError('AugmentPipe: non-finite geometric transform (debug_percentile must lie strictly between 0 and 1)')
        if not _is_identity(G_inv):
            images = self._resample(images, G_inv)
            misc.assert_shape(images, [N, C, H, W])

        M = self._color_matrix(N, C, device, dp)
        if not _is_identity(M):
            images = self._apply_color(images, M)

        if self.imgfilter > 0:
            g, changed = self._band_gains(N, device, dp)
            if changed:
                images = self._apply_filter(images, g)

        if self.noise > 0:
            images = self._apply_noise(images, dp)
        if self.cutout > 0:
            images = self._apply_cutout(images, dp)
        return images

#----------------------------------------------------------------------------

def _reflect_pad(x, pad):
    """Mirror-pad the last two dims by `pad` (without repeating the edge), also when pad >= size."""
    while pad > 0:
        step = min(pad, x.shape[-1] - 1, x.shape[-2] - 1)
        assert step > 0, 'AugmentPipe: images must be at least 2x2 pixels'
        x = torch.nn.functional.pad(input=x, pad=[step] * 4, mode='reflect')
        pad -= step
    return x

def _group_delay(f):
    """Delay at DC of the 1-D filter f, in samples: centroid of the taps minus their midpoint."""
    k = torch.arange(f.shape[0], device=f.device, dtype=f.dtype)
    return (k * f).sum() / f.sum() - (f.shape[0] - 1) / 2

def _is_identity(M):
    """True when every matrix in M ([..., K, K]) is exactly the identity."""
    eye = torch.eye(M.shape[-1], device=M.device, dtype=M.dtype)
    return bool((M == eye).all())

#----------------------------------------------------------------------------
