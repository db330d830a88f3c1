"""Photos in the wild: FFHQ face alignment (offline landmarks, MediaPipe extra) and paste-back of edited crops.

    >>> from gradstyle_plugin import align
    >>> out = align.align_photo(photo, 1024)                          # AlignedFace: crop, transform, notes
    >>> pasted = align.paste_back(photo, edited_crop, out.transform)  # uint8 [H, W, 3], the photo's size

ffhq.py: the FFHQ quad and the resampling; landmarks.py: MediaPipe detection; photo.py: one photo
-> one crop; paste.py: the inverse warp with a feathered mask. MediaPipe is imported only when a
FaceFinder is made, so the geometry works without it.
"""

from .ffhq import AlignTransform, ffhq_quad, warp_to_crop
from .landmarks import EXTRA_HINT, Face, FaceFinder, require_mediapipe
from .photo import AlignedFace, align_file, align_photo
from .paste import crop_mask, paste_back, photo_mask, quad_box, warp_to_photo

__all__ = ['AlignTransform', 'ffhq_quad', 'warp_to_crop', 'EXTRA_HINT', 'Face', 'FaceFinder', 'require_mediapipe',
    'AlignedFace', 'align_file', 'align_photo', 'crop_mask', 'paste_back', 'photo_mask', 'quad_box', 'warp_to_photo']
