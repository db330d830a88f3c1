"""Offline face detection and the five FFHQ landmarks, with MediaPipe 0.10.14's bundled models.

MediaPipe's legacy "solutions" graphs load their TFLite models from files inside the wheel
(`mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite`,
`.../face_landmark/face_landmark.tflite`), so nothing is downloaded; its 1.x releases dropped
them. MediaPipe is an optional extra: `pip install -e ".[align]"`.

Steps (ours):
1. Face detection (full-range model) finds boxes; when it finds none in the whole photo, it looks in
   3 x 3 overlapping tiles of half the photo's size (small faces in large photos; overlapping boxes
   merged), and when that finds none either, the photo is tried turned by 90, 180 and 270 degrees
   (sideways and upside-down photos).
2. For every box, the 468-point Face Mesh runs on a square region of 2x the box side around it.
3. FFHQ landmarks from the mesh: each eye centre is the mean of its 16-point contour (the recipe
   averages dlib's 6 eye-contour points); the mouth corners are points 61 and 291 (dlib 48, 54).
Faces are sorted by box area, largest first.

Shape letters: H, W photo size.
"""

import dataclasses
import os
import warnings

import numpy as np

from stylegan2_ada_pytorch.dnnlib import UserError

__all__ = ['EXTRA_HINT', 'Face', 'FaceFinder', 'require_mediapipe']

EXTRA_HINT = 'pip install -e ".[align]"  (mediapipe==0.10.14)'
MIN_DETECTION_CONFIDENCE = 0.5  # ours: MediaPipe's default.
REGION_SCALE = 2.0              # ours: Face Mesh sees a square of 2x the detected box side.
TILES = 3                       # ours: fallback search in 3 x 3 tiles of half the photo (stride a quarter).
MERGE_IOU = 0.3                 # ours: boxes from overlapping tiles with IoU above this are one face.

# Face Mesh indices (the 468-point topology): the two eye contours and the outer mouth corners.
LEFT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)       # image left (subject's right)
RIGHT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
MOUTH_LEFT, MOUTH_RIGHT = 61, 291

#----------------------------------------------------------------------------

def require_mediapipe(flag='--align'):
    """The mediapipe module, or UserError naming the extra."""
    os.environ.setdefault('GLOG_minloglevel', '2')                     # MediaPipe's C++ logging: errors only
    try:
        import mediapipe
        mediapipe.solutions.face_mesh                                   # noqa: B018 (the legacy graphs must be there)
    except (ImportError, AttributeError) as err:
        raise UserError(f'{flag}: face alignment needs MediaPipe, an optional extra: {EXTRA_HINT} ({type(err).__name__}: {err})')
    return mediapipe

@dataclasses.dataclass
class Face:
    """One face in photo pixels (continuous coordinates): the FFHQ landmarks, the detector box and score."""
    eye_left:       np.ndarray      # [2] (x, y): the subject's right eye (on the left in an upright view).
    eye_right:      np.ndarray      # [2]
    mouth_left:     np.ndarray      # [2]
    mouth_right:    np.ndarray      # [2]
    box:            np.ndarray      # [4] x0, y0, x1, y1.
    score:          float
    rotated:        int = 0         # Degrees the photo had to be turned (counter-clockwise) for the detector.

    @property
    def eye_distance(self):
        return float(np.hypot(*(self.eye_right - self.eye_left)))

    @property
    def roll(self):
        """In-plane angle of the eye line in degrees (0 = level, positive = clockwise in the image)."""
        d = self.eye_right - self.eye_left
        return float(np.degrees(np.arctan2(d[1], d[0])))

    def to_dict(self):
        return dict(eye_left=self.eye_left.tolist(), eye_right=self.eye_right.tolist(), mouth_left=self.mouth_left.tolist(),
            mouth_right=self.mouth_right.tolist(), box=self.box.tolist(), score=self.score, rotated=self.rotated)

#----------------------------------------------------------------------------

class FaceFinder:
    """Detects faces and their FFHQ landmarks in uint8 RGB photos [H, W, 3] (reusable; close() frees the graphs).

    Example:
        >>> finder = FaceFinder()
        >>> faces = finder(np.asarray(PIL.Image.open('me.jpg').convert('RGB')))
        >>> faces[0].eye_left, faces[0].mouth_right
    """

    def __init__(self, flag='--align'):
        mp = require_mediapipe(flag)
        self._detector = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=MIN_DETECTION_CONFIDENCE)
        self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False,
            min_detection_confidence=MIN_DETECTION_CONFIDENCE)

    def close(self):
        self._detector.close()
        self._mesh.close()

    def __call__(self, img):
        """[Face], largest first (empty when no face is found)."""
        img = np.ascontiguousarray(img)
        for turns in range(4):
            view = np.ascontiguousarray(np.rot90(img, turns))
            faces = [f for f in (self._face_in(view, box, score) for box, score in self._boxes(view)) if f is not None]
            if faces:
                faces = [_unturn(f, turns, img.shape) for f in faces]
                return sorted(faces, key=lambda f: -np.prod(f.box[2:] - f.box[:2]))
        return []

    def _detect(self, img, x0=0, y0=0):
        h, w = img.shape[:2]
        result = _quiet(self._detector.process, np.ascontiguousarray(img))
        for det in result.detections or []:
            b = det.location_data.relative_bounding_box
            yield np.array([b.xmin * w + x0, b.ymin * h + y0, (b.xmin + b.width) * w + x0, (b.ymin + b.height) * h + y0]), float(det.score[0])

    def _boxes(self, img):
        # [(box, score)]: the whole photo, else the tiles (boxes merged across tiles, best score kept).
        found = list(self._detect(img))
        if found:
            return found
        h, w = img.shape[:2]
        th, tw = h // 2, w // 2
        for y0 in np.linspace(0, h - th, TILES).astype(int):
            for x0 in np.linspace(0, w - tw, TILES).astype(int):
                found += list(self._detect(img[y0:y0 + th, x0:x0 + tw], x0, y0))
        kept = []
        for box, score in sorted(found, key=lambda f: -f[1]):
            if all(_iou(box, other) <= MERGE_IOU for other, _s in kept):
                kept.append((box, score))
        return kept

    def _face_in(self, img, box, score):
        # Face Mesh on a square region around the box; landmarks back in photo pixels.
        h, w = img.shape[:2]
        centre, half = (box[:2] + box[2:]) / 2, REGION_SCALE * max(box[2] - box[0], box[3] - box[1]) / 2
        x0, y0 = np.floor(np.maximum(centre - half, 0)).astype(int)
        x1, y1 = np.ceil(np.minimum(centre + half, [w, h])).astype(int)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return None
        result = _quiet(self._mesh.process, np.ascontiguousarray(img[y0:y1, x0:x1]))
        if not result.multi_face_landmarks:
            return None
        lm = result.multi_face_landmarks[0].landmark
        pts = np.array([[p.x, p.y] for p in lm], dtype=np.float64) * [x1 - x0, y1 - y0] + [x0, y0]
        return Face(eye_left=pts[list(LEFT_EYE)].mean(0), eye_right=pts[list(RIGHT_EYE)].mean(0), mouth_left=pts[MOUTH_LEFT],
            mouth_right=pts[MOUTH_RIGHT], box=np.asarray(box, dtype=np.float64), score=score)

def _iou(a, b):
    inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
    return inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter)

def _quiet(fn, *args):
    # MediaPipe 0.10.14 calls a protobuf API that protobuf 4.x marks deprecated, once per call.
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='SymbolDatabase.GetPrototype', category=UserWarning)
        return fn(*args)

def _unturn(face, turns, shape):
    """A Face found in np.rot90(img, turns) mapped back to img's pixels (eye_left stays the subject's right eye)."""
    if turns == 0:
        return face
    h, w = shape[:2]
    pts = {k: _back_points(getattr(face, k), turns, h, w) for k in ('eye_left', 'eye_right', 'mouth_left', 'mouth_right')}
    corners = _back_points(np.array([[face.box[0], face.box[1]], [face.box[2], face.box[3]]]), turns, h, w)
    box = np.concatenate([corners.min(0), corners.max(0)])
    return Face(box=box, score=face.score, rotated=90 * turns, **pts)

def _back_points(p, turns, h, w):
    # Undo np.rot90(img, turns) one quarter turn at a time: a view point (x, y) of np.rot90(a) is a point (W_a - y, x) of a,
    # where W_a is the width of a (the array before that turn).
    p = np.asarray(p, dtype=np.float64).copy()
    for k in range(turns - 1, -1, -1):
        width_before = w if k % 2 == 0 else h
        p = np.stack([width_before - p[..., 1], p[..., 0]], axis=-1)
    return p

#----------------------------------------------------------------------------
