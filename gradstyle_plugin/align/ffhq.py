"""FFHQ face alignment: the oriented square of the FFHQ recipe and the crop it defines.

The recipe (Karras et al., "A Style-Based Generator Architecture for GANs", CVPR 2019, appendix A,
and the FFHQ dataset's published alignment procedure), restated from its facts:

    eye_avg = (eye_left + eye_right) / 2            eye_to_eye   = eye_right - eye_left
    mouth_avg = (mouth_left + mouth_right) / 2      eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - rot90(eye_to_mouth), normalised, scaled to max(2 |eye_to_eye|, 1.8 |eye_to_mouth|)
    y = rot90(x);  c = eye_avg + 0.1 * eye_to_mouth;  quad = c - x - y, c - x + y, c + x + y, c + x - y

(rot90 turns a vector by 90 degrees so that "down" becomes "left" in image coordinates.) The
quad's side is 2 |x|. Before resampling, the photo is shrunk by an integer factor
floor(side / R / 2) when that is 2 or more, cropped to the quad's bounding box plus a border of
max(rint(0.1 side), 3) pixels, and padded by reflection where the quad leaves the photo (at least
rint(0.3 side) once padding is needed), the padding blurred (sigma 0.02 side) and faded to the
median colour. The quad is then resampled to a supersampled square and reduced to R x R with an
antialiasing filter (the recipe: 4096 then 1024; here S R with S = ceil(photo pixels per crop pixel
after the shrink), at most 4, bicubic, then Lanczos; S = 1 when the face is upscaled).

Coordinates: continuous (x, y) pixels with pixel (i, j) covering [i, i + 1] x [j, j + 1], in the
photo and in the crop alike (PIL's convention). `AlignTransform.matrix` maps crop coordinates to
photo coordinates (a similarity: the quad is an oriented square); it is all paste-back needs.

Shape letters: H, W photo size, R crop resolution, C channels.
"""

import dataclasses

import numpy as np
import PIL.Image
import scipy.ndimage

__all__ = ['MAX_SUPERSAMPLE', 'ffhq_quad', 'AlignTransform', 'warp_to_crop']

MAX_SUPERSAMPLE = 4             # ours: resample the quad at S R, S = ceil(photo px per crop px) <= 4, then Lanczos to R.

#----------------------------------------------------------------------------

def _rot90(v):
    # (vx, vy) -> (-vy, vx): "down" (0, 1) becomes "left" (-1, 0) in image coordinates.
    return np.array([-v[1], v[0]])

def ffhq_quad(eye_left, eye_right, mouth_left, mouth_right):
    """float64 [4, 2] corners (x, y) in photo pixels: top-left, bottom-left, bottom-right, top-right of the crop.

    `eye_left` is the eye on the left of the image (the subject's right eye); each point is (x, y).
    """
    e_l, e_r, m_l, m_r = (np.asarray(p, dtype=np.float64).reshape(2) for p in (eye_left, eye_right, mouth_left, mouth_right))
    eye_avg, eye_to_eye = (e_l + e_r) / 2, e_r - e_l
    eye_to_mouth = (m_l + m_r) / 2 - eye_avg
    x = eye_to_eye - _rot90(eye_to_mouth)
    x *= max(2.0 * np.hypot(*eye_to_eye), 1.8 * np.hypot(*eye_to_mouth)) / np.hypot(*x)
    y = _rot90(x)
    c = eye_avg + 0.1 * eye_to_mouth
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])

#----------------------------------------------------------------------------

@dataclasses.dataclass
class AlignTransform:
    """Where an R x R crop came from: `quad` [4, 2] in photo pixels, `resolution` R, `photo_size` (W, H)."""
    quad:       np.ndarray
    resolution: int
    photo_size: tuple

    def __post_init__(self):
        self.quad = np.asarray(self.quad, dtype=np.float64).reshape(4, 2)
        self.resolution = int(self.resolution)
        self.photo_size = tuple(int(v) for v in self.photo_size)

    @property
    def side(self):
        """Side of the quad in photo pixels."""
        return float(np.hypot(*(self.quad[3] - self.quad[0])))

    @property
    def matrix(self):
        """float64 [3, 3]: homogeneous crop (x, y, 1) -> photo (x, y, 1)."""
        q0, q1, q3 = self.quad[0], self.quad[1], self.quad[3]
        m = np.eye(3)
        m[:2, 0], m[:2, 1], m[:2, 2] = (q3 - q0) / self.resolution, (q1 - q0) / self.resolution, q0
        return m

    def to_photo(self, points):
        """float64 [..., 2] crop points -> photo points."""
        return _apply(self.matrix, points)

    def to_crop(self, points):
        """float64 [..., 2] photo points -> crop points."""
        return _apply(np.linalg.inv(self.matrix), points)

    def to_dict(self):
        """JSON-ready: quad, resolution, photo_size and the crop -> photo matrix (2 x 3)."""
        return dict(quad=self.quad.tolist(), resolution=self.resolution, photo_size=list(self.photo_size),
            crop_to_photo=self.matrix[:2].tolist())

    @classmethod
    def from_dict(cls, data):
        return cls(quad=data['quad'], resolution=data['resolution'], photo_size=data['photo_size'])

def _apply(m, points):
    p = np.asarray(points, dtype=np.float64)
    return p @ m[:2, :2].T + m[:2, 2]

#----------------------------------------------------------------------------
# Resampling the photo into the crop.

def _shrink(img, quad, resolution):
    """Integer pre-shrink of the recipe: (image, quad in its pixels)."""
    side = np.hypot(*(quad[3] - quad[0]))
    factor = int(np.floor(side / resolution * 0.5))
    if factor <= 1:
        return img, quad
    h, w = img.shape[:2]
    size = (max(int(np.rint(w / factor)), 1), max(int(np.rint(h / factor)), 1))
    small = np.asarray(PIL.Image.fromarray(img).resize(size, PIL.Image.LANCZOS))
    return small.reshape(size[1], size[0], -1), quad * np.array([size[0] / w, size[1] / h])

def _crop_and_pad(img, quad):
    """Crop to the quad's box plus a border, reflect-pad where the quad leaves the photo: (float32 image, quad)."""
    side = np.hypot(*(quad[3] - quad[0]))
    border = max(int(np.rint(side * 0.1)), 3)
    lo = np.floor(quad.min(axis=0)).astype(int) - border                   # (x0, y0)
    hi = np.ceil(quad.max(axis=0)).astype(int) + border                    # (x1, y1)
    h, w = img.shape[:2]
    c_lo, c_hi = np.maximum(lo, 0), np.minimum(hi, [w, h])
    img = img[c_lo[1]:c_hi[1], c_lo[0]:c_hi[0]].astype(np.float32)
    quad = quad - c_lo
    pad = np.concatenate([c_lo - lo, hi - c_hi]).clip(0)                    # left, top, right, bottom
    if pad.max() <= border - 4:
        return img, quad
    pad = np.maximum(pad, int(np.rint(side * 0.3)))
    left, top, right, bottom = (int(v) for v in pad)
    mode = 'reflect' if min(img.shape[:2]) > 1 else 'edge'
    padded = np.pad(img, ((top, bottom), (left, right), (0, 0)), mode=mode)
    return _fade_padding(padded, (left, top, right, bottom), side), quad + [left, top]

def _fade_padding(img, pad, side):
    # t = distance outside the original photo / pad width (< 0 inside): blend to a blur near and beyond the
    # edge (weight clip(3 t + 1)), then to the median colour (weight clip(t)).
    h, w = img.shape[:2]
    left, top, right, bottom = (max(v, 1) for v in pad)
    x = np.arange(w, dtype=np.float32)[None, :, None] + 0.5
    y = np.arange(h, dtype=np.float32)[:, None, None] + 0.5
    t = np.maximum(np.maximum((pad[0] - x) / left, (x - (w - pad[2])) / right),
                   np.maximum((pad[1] - y) / top, (y - (h - pad[3])) / bottom))
    sigma = side * 0.02
    blurred = scipy.ndimage.gaussian_filter(img, [sigma, sigma, 0])
    img = img + (blurred - img) * np.clip(3 * t + 1, 0, 1)
    return img + (np.median(img, axis=(0, 1)) - img) * np.clip(t, 0, 1)

def _affine_resample(img, quad, size, resample):
    """uint8/float32 [H, W, C] -> [size, size, C]: the quad resampled to a size x size square (PIL AFFINE)."""
    q0, q1, q3 = quad[0], quad[1], quad[3]
    ax, ay = (q3 - q0) / size, (q1 - q0) / size                           # photo step per crop pixel along x, y
    coeffs = (ax[0], ay[0], q0[0], ax[1], ay[1], q0[1])
    channels = [PIL.Image.fromarray(np.ascontiguousarray(img[..., c]), 'F') for c in range(img.shape[2])]
    out = [np.asarray(ch.transform((size, size), PIL.Image.AFFINE, coeffs, resample=resample)) for ch in channels]
    return np.stack(out, axis=-1)

def warp_to_crop(img, transform):
    """uint8 [H, W, C] photo -> uint8 [R, R, C] crop of `transform` (an AlignTransform), as the recipe resamples."""
    img = np.asarray(img)
    img = img[..., None] if img.ndim == 2 else img
    R = transform.resolution
    small, quad = _shrink(img, transform.quad, R)
    work, quad = _crop_and_pad(small, quad)
    supersample = int(np.clip(np.ceil(np.hypot(*(quad[3] - quad[0])) / R - 1e-6), 1, MAX_SUPERSAMPLE))
    big = _affine_resample(work, quad, supersample * R, PIL.Image.BICUBIC)
    out = [np.asarray(PIL.Image.fromarray(big[..., c], 'F').resize((R, R), PIL.Image.LANCZOS)) for c in range(big.shape[2])]
    return np.rint(np.stack(out, axis=-1)).clip(0, 255).astype(np.uint8)

#----------------------------------------------------------------------------
