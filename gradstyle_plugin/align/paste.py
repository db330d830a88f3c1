"""Paste-back: an (edited) aligned crop warped back into the photo it came from, through a feathered mask.

The crop -> photo map is the similarity of `AlignTransform.matrix`; each photo pixel samples the
crop at the inverse map (PIL AFFINE, bicubic; the crop is first reduced with Lanczos to twice the
face's size in the photo when it is larger than that, so the warp does not alias). The blend is

    out = photo + m * (warped - photo),   m = the crop-space mask warped the same way (bilinear),

so pixels where m = 0 (outside the crop, and its feathered border) keep their exact values; only
the quad's bounding box is resampled (large photos stay cheap). The
default mask is 1 inside the crop and falls to 0 towards its edges over `feather * R` pixels
(smoothstep); a mask file (white = paste) replaces it inside that border and is blurred by
sigma = feather * R / 4.

Shape letters: H, W photo size, R crop resolution, C channels.
"""

import numpy as np
import PIL.Image
import scipy.ndimage

__all__ = ['FEATHER', 'crop_mask', 'warp_to_photo', 'photo_mask', 'quad_box', 'paste_back']

FEATHER = 0.1                   # ours: the mask fades over the outer 10% of the crop side.
PRE_REDUCE = 2                  # ours: a crop more than 2x larger than its face in the photo is first reduced to 2x.

#----------------------------------------------------------------------------

def crop_mask(resolution, feather=FEATHER, mask=None):
    """float32 [R, R] in [0, 1]: the feathered paste mask in crop pixels; `mask` an optional uint8/float [h, w] image (white = paste)."""
    R = int(resolution)
    width = max(feather * R, 1e-6)
    d = np.minimum(np.arange(R) + 0.5, R - 0.5 - np.arange(R)) / width                  # distance to the nearest edge
    ramp = np.clip(np.minimum(d[:, None], d[None, :]), 0, 1)
    m = ramp * ramp * (3 - 2 * ramp)                                                    # smoothstep
    if mask is not None:
        user = np.asarray(mask, dtype=np.float32)
        user = user.mean(axis=2) if user.ndim == 3 else user
        user = user / 255 if user.max() > 1 else user
        user = np.asarray(PIL.Image.fromarray(user.astype(np.float32), 'F').resize((R, R), PIL.Image.BILINEAR))
        m = m * np.clip(scipy.ndimage.gaussian_filter(user, width / 4), 0, 1)
    return m.astype(np.float32)

def warp_to_photo(crop, transform, resample=PIL.Image.BICUBIC, box=None):
    """float32 [H, W, C]: a crop [R, R, C] (or [R, R]) sampled at every photo pixel (0 outside the crop).

    `box` = (x0, y0, x1, y1) samples only that part of the photo: [y1 - y0, x1 - x0, C].
    """
    crop = np.asarray(crop, dtype=np.float32)
    crop = crop[..., None] if crop.ndim == 2 else crop
    R, size = transform.resolution, int(np.ceil(transform.side))
    x0, y0, x1, y1 = box if box is not None else (0, 0) + tuple(transform.photo_size)
    inv = np.linalg.inv(transform.matrix) @ np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]])   # box -> crop pixels
    if size * PRE_REDUCE < R:                                                           # pre-reduce: no aliasing
        size *= PRE_REDUCE
        crop = np.stack([_resize(crop[..., c], size) for c in range(crop.shape[2])], axis=-1)
        inv = np.diag([size / R, size / R, 1.0]) @ inv
    coeffs = tuple(inv[:2].reshape(-1))
    out = [np.asarray(PIL.Image.fromarray(np.ascontiguousarray(crop[..., c]), 'F').transform((x1 - x0, y1 - y0), PIL.Image.AFFINE,
        coeffs, resample=resample)) for c in range(crop.shape[2])]
    return np.stack(out, axis=-1)

def _resize(channel, size):
    return np.asarray(PIL.Image.fromarray(channel, 'F').resize((size, size), PIL.Image.LANCZOS))

def photo_mask(transform, feather=FEATHER, mask=None, box=None):
    """float32 [H, W, 1] in [0, 1]: the paste mask in photo pixels (0 exactly where the photo is kept); `box` as warp_to_photo."""
    return warp_to_photo(crop_mask(transform.resolution, feather, mask), transform, resample=PIL.Image.BILINEAR, box=box).clip(0, 1)

def quad_box(transform):
    """(x0, y0, x1, y1): the photo pixels the crop can reach (its quad's bounding box plus 2 px, inside the photo)."""
    lo = np.maximum(np.floor(transform.quad.min(axis=0)) - 2, 0).astype(int)
    hi = np.minimum(np.ceil(transform.quad.max(axis=0)) + 2, transform.photo_size).astype(int)
    return int(lo[0]), int(lo[1]), int(max(hi[0], lo[0])), int(max(hi[1], lo[1]))

def paste_back(photo, crop, transform, mask=None, feather=FEATHER):
    """uint8 [H, W, C]: `crop` (uint8 [R, R, C], the aligned face, edited or not) blended into `photo` (uint8 [H, W, C]).

    `transform` is the AlignTransform the crop was made with; `mask` an optional crop-space mask
    image (white = paste), feathered as the default one.
    """
    photo = np.asarray(photo)
    if (photo.shape[1], photo.shape[0]) != tuple(transform.photo_size):
        raise ValueError(f'paste_back: photo is {photo.shape[1]}x{photo.shape[0]} but the transform was made for '
            f'{transform.photo_size[0]}x{transform.photo_size[1]}')
    if np.asarray(crop).shape[:2] != (transform.resolution,) * 2:
        raise ValueError(f'paste_back: crop has shape {list(np.asarray(crop).shape)}, expected {transform.resolution}x{transform.resolution}')
    out = photo.copy()
    x0, y0, x1, y1 = box = quad_box(transform)
    if x1 == x0 or y1 == y0:
        return out                                                                      # the crop lies outside the photo
    m = photo_mask(transform, feather, mask, box)
    warped = warp_to_photo(crop, transform, box=box)
    base = photo[y0:y1, x0:x1].astype(np.float32).reshape(warped.shape)
    blend = np.where(m > 0, base + m * (warped - base), base)
    out[y0:y1, x0:x1] = np.rint(blend).clip(0, 255).astype(np.uint8).reshape(out[y0:y1, x0:x1].shape)
    return out

#----------------------------------------------------------------------------
