"""One photo in, one FFHQ-aligned face crop out, with the transform that paste-back needs.

    >>> from gradstyle_plugin import align
    >>> finder = align.FaceFinder()                                   # MediaPipe graphs, loaded once
    >>> out = align.align_photo(photo, 1024, finder=finder)           # photo: uint8 [H, W, 3]
    >>> out.crop, out.transform.to_dict(), out.notes                  # uint8 [1024, 1024, 3]

Per-file problems raise `SkipImage` with a one-line reason (no face, face index out of range, face
too small); what was done is listed in `notes` (several faces, a rotated face or photo, upscaling).
"""

import dataclasses
from typing import List

import numpy as np

from stylegan2_ada_pytorch.images import SkipImage, read_image
from .ffhq import AlignTransform, ffhq_quad, warp_to_crop
from .landmarks import Face, FaceFinder

__all__ = ['MIN_EYE_DISTANCE', 'ROLL_NOTE_DEGREES', 'AlignedFace', 'align_photo', 'align_file']

MIN_EYE_DISTANCE = 12           # ours: eyes closer than this (photo pixels) are too few pixels to align.
ROLL_NOTE_DEGREES = 20          # ours: faces tilted more than this are reported as straightened.
UPSCALE_NOTE = 2.0              # ours: report crops upscaled more than 2x (blurry inputs invert badly).

@dataclasses.dataclass
class AlignedFace:
    crop:       np.ndarray          # uint8 [R, R, C].
    transform:  AlignTransform      # Crop -> photo.
    face:       Face                # The face that was aligned.
    faces:      List[Face]          # Every face found, largest first.
    face_index: int
    notes:      List[str]

    def to_dict(self):
        return dict(transform=self.transform.to_dict(), face_index=self.face_index, num_faces=len(self.faces),
            face=self.face.to_dict(), notes=list(self.notes))

def align_photo(photo, resolution, face_index=0, finder=None):
    """AlignedFace of the `face_index`-th largest face of a uint8 photo [H, W, 3] (SkipImage when it cannot)."""
    photo = np.asarray(photo)
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise SkipImage(f'face alignment needs an 8-bit RGB photo, got {photo.dtype} {list(photo.shape)}')
    own = finder is None
    finder = FaceFinder() if own else finder
    try:
        faces = finder(photo)
    finally:
        if own:
            finder.close()
    if not faces:
        raise SkipImage('no face found (nothing to align; pass a photo with a visible face, or drop --align)')
    if face_index >= len(faces):
        raise SkipImage(f'--face-index {face_index}: only {len(faces)} face{"s" if len(faces) > 1 else ""} found')
    face = faces[face_index]
    if face.eye_distance < MIN_EYE_DISTANCE:
        raise SkipImage(f'face too small: eyes {face.eye_distance:.1f} px apart (need at least {MIN_EYE_DISTANCE})')
    transform = AlignTransform(ffhq_quad(face.eye_left, face.eye_right, face.mouth_left, face.mouth_right), resolution,
        (photo.shape[1], photo.shape[0]))
    return AlignedFace(crop=warp_to_crop(photo, transform), transform=transform, face=face, faces=faces, face_index=face_index,
        notes=_notes(face, faces, face_index, transform))

def align_file(entry, resolution, face_index=0, finder=None):
    """(photo uint8 [H, W, 3], AlignedFace, notes): read an image file (path or ImageEntry) at full size and align it.

    `notes` = what reading changed (EXIF rotation, mode) + the alignment notes. SkipImage on failure.
    """
    photo, notes = read_image(entry, None, channels=3)
    aligned = align_photo(photo, resolution, face_index=face_index, finder=finder)
    return photo, aligned, notes + aligned.notes

def _notes(face, faces, face_index, transform):
    notes = []
    if len(faces) > 1:
        notes.append(f'{len(faces)} faces found; aligned face {face_index} ({"the largest" if face_index == 0 else "by size"}; '
            '--face-index picks another)')
    if face.rotated:
        notes.append(f'face found with the photo turned by {face.rotated} degrees')
    if abs(face.roll) > ROLL_NOTE_DEGREES:
        notes.append(f'face tilted by {face.roll:.0f} degrees; straightened')
    scale = transform.resolution / transform.side
    if scale > UPSCALE_NOTE:
        notes.append(f'small face: crop upscaled {scale:.1f}x (expect a blurry input)')
    return notes

#----------------------------------------------------------------------------
