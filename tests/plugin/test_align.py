"""Face alignment (gradstyle_plugin.align): the FFHQ quad, the resampling against skimage, MediaPipe
landmarks on real photos, paste-back, and the one-line error without the extra.

References: skimage.transform.warp (resampling), numpy linear algebra (geometry), the FFHQ sample
e4e_input_img.jpg (a 1024 crop made by the original dlib-based FFHQ script) for the template.
Figures measured when the tests were written are in the comments (mediapipe 0.10.14, CPU).
"""

import sys

import numpy as np
import PIL.Image
import pytest
import skimage.data
import skimage.transform

from stylegan2_ada_pytorch.dnnlib import UserError
from stylegan2_ada_pytorch.images import SkipImage, read_image
from gradstyle_plugin import align

#----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def finder():
    f = align.FaceFinder()
    yield f
    f.close()

@pytest.fixture(scope='module')
def ffhq_photo(fixtures_dir):
    return np.asarray(PIL.Image.open(fixtures_dir / 'images' / 'e4e_input_img.jpg').convert('RGB'))

def _points(face):
    return np.stack([face.eye_left, face.eye_right, face.mouth_left, face.mouth_right])

def _skimage_map(matrix):
    # skimage puts pixel centres at integer coordinates, we at i + 0.5: conjugate by the half-pixel shift.
    shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    return skimage.transform.AffineTransform(matrix=np.linalg.inv(shift) @ matrix @ shift)

def _smooth_image(h, w, seed=0):
    # Low frequencies only, so every interpolator agrees to a fraction of a level.
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[:h, :w] / max(h, w)
    chans = [sum(np.sin(2 * np.pi * (rng.rand() * 3 * x + rng.rand() * 3 * y) + 6 * rng.rand()) for _ in range(3)) for _c in range(3)]
    return np.rint(np.stack(chans, -1) / 3 * 100 + 128).astype(np.uint8)

#----------------------------------------------------------------------------
# Geometry (no MediaPipe).

def test_quad_follows_the_recipe_and_rotates_with_the_face():
    # Upright face, eyes 100 px apart, mouth 110 px below: the eye term dominates (200 > 198), so the side is 4 * 100.
    e_l, e_r, m_l, m_r = np.array([[300., 400], [400, 400], [310, 510], [390, 510]])
    quad = align.ffhq_quad(e_l, e_r, m_l, m_r)
    centre = np.array([350, 400 + 0.1 * 110])
    assert np.allclose(quad, centre + np.array([[-200, -200], [-200, 200], [200, 200], [200, -200]]))
    # Mouth far below (1.8 * 150 = 270 > 200): the side is 2 * 1.8 * |eye_to_mouth|.
    assert np.isclose(align.AlignTransform(align.ffhq_quad(e_l, e_r, m_l + [0, 40], m_r + [0, 40]), 256, (800, 800)).side, 2 * 1.8 * 150)
    # A similarity of the landmarks moves the quad by the same similarity.
    a = np.radians(25)
    rot = 1.3 * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    moved = align.ffhq_quad(*(rot @ p + [40, -15] for p in (e_l, e_r, m_l, m_r)))
    assert np.allclose(moved, quad @ rot.T + [40, -15])
    t = align.AlignTransform(quad, 256, (800, 800))
    assert np.allclose(t.to_photo([[0, 0], [0, 256], [256, 256], [256, 0]]), quad)
    assert np.allclose(t.to_crop(t.to_photo([[3.5, 100.25]])), [[3.5, 100.25]])
    assert np.allclose(align.AlignTransform.from_dict(t.to_dict()).matrix, t.matrix)

@pytest.mark.parametrize('side', [180.0, 700.0])          # upscaled (S = 1) and reduced (S = 3) crops
def test_warp_to_crop_matches_skimage(side):
    photo = _smooth_image(900, 1000)
    a = np.radians(-12)
    x = side / 2 * np.array([np.cos(a), np.sin(a)])
    y = np.array([-x[1], x[0]])
    c = np.array([480.0, 430.0])
    t = align.AlignTransform(np.stack([c - x - y, c - x + y, c + x + y, c + x - y]), 256, (1000, 900))
    crop = align.warp_to_crop(photo, t).astype(np.float64)
    reference = skimage.transform.warp(photo / 255.0, _skimage_map(t.matrix), output_shape=(256, 256), order=3) * 255
    err = np.abs(crop - reference)
    assert err.mean() < 0.6 and err.max() < 3, (err.mean(), err.max())      # measured 0.26 / 1.0 (180), 0.27 / 1.3 (700)

def test_quad_outside_the_photo_is_padded_not_black():
    photo = _smooth_image(300, 300)
    t = align.AlignTransform([[-100, -100], [-100, 200], [200, 200], [200, -100]], 64, (300, 300))
    crop = align.warp_to_crop(photo, t)
    assert crop.min() > 10                  # reflected, blurred and faded to the median colour, never the 0 fill

#----------------------------------------------------------------------------
# Landmarks and alignment on real photos (MediaPipe, a [test] dependency).

def test_ffhq_photo_aligns_to_about_the_identity(finder, ffhq_photo):
    out = align.align_photo(ffhq_photo, 256, finder=finder)
    t1024 = align.AlignTransform(out.transform.quad, 1024, out.transform.photo_size)   # same quad, expressed at 1024
    points = _points(out.face)
    moved = np.abs(t1024.to_crop(points) - points).max()
    corners = np.abs(out.transform.quad - [[0, 0], [0, 1024], [1024, 1024], [1024, 0]]).max()
    print(f'landmarks moved by at most {moved:.1f} px, quad corners off by at most {corners:.1f} px (at 1024)')
    assert moved < 16                       # measured 12.3 px (MediaPipe's mouth corners vs dlib's)
    assert corners < 26                     # measured 20.9 px (2% of the side)
    assert out.notes == [] and len(out.faces) == 1

def test_rotated_and_shifted_copy_gives_back_the_same_crop(finder, ffhq_photo):
    small = np.asarray(PIL.Image.fromarray(ffhq_photo).resize((512, 512), PIL.Image.LANCZOS))
    ref = align.align_photo(small, 256, finder=finder).crop.astype(np.float64)
    a = np.radians(20)
    m = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    m[:2, 2] = [400, 260] - m[:2, :2] @ [256, 256]                     # the face centre lands at (400, 260) of a 760x700 canvas
    moved = skimage.transform.warp(small / 255.0, _skimage_map(np.linalg.inv(m)), output_shape=(700, 760), order=3, mode='reflect')
    moved = np.rint(moved * 255).astype(np.uint8)
    out = align.align_photo(moved, 256, finder=finder)
    inner = slice(32, 224)                                              # the central 75%: the corners were outside the copy
    l1 = np.abs(out.crop[inner, inner] - ref[inner, inner]).mean() / 255
    unaligned = read_image(PIL.Image.fromarray(moved), 256)[0]         # the baseline: centre crop, no alignment
    baseline = np.abs(unaligned[inner, inner] - ref[inner, inner]).mean() / 255
    print(f'L1 of the recovered crop (central 75%, [0, 1] units): {l1:.4f}; unaligned centre crop {baseline:.4f}')
    # The floor is the landmarks' jitter (1-2 px at 512): the same photo only shifted gives 0.028.
    assert l1 < 0.04 and l1 < baseline / 3  # measured 0.023 vs 0.15
    assert 'tilted' not in ' '.join(out.notes) and abs(out.face.roll - 20) < 2

def test_photo_without_a_face_is_skipped(finder, fixtures_dir):
    car = np.asarray(PIL.Image.open(fixtures_dir / 'images' / 'e4e_car_img.jpg').convert('RGB'))
    with pytest.raises(SkipImage, match='^no face found'):
        align.align_photo(car, 256, finder=finder)

def test_astronaut_eyes_sit_at_the_ffhq_template(finder, ffhq_photo):
    # Template: the eye centres of a real FFHQ image (made by the original recipe), scaled to R.
    R = 256
    template = _points(finder(ffhq_photo)[0])[:2] * R / 1024
    out = align.align_photo(skimage.data.astronaut(), R, finder=finder)
    eyes = _points(finder(out.crop)[0])[:2]                                         # detected again in the crop
    err = np.abs(eyes - template).max()
    print(f'astronaut eyes {eyes.round(1).tolist()} vs FFHQ template {template.round(1).tolist()}: {err:.1f} px at {R}')
    assert err < 0.02 * R                   # measured 1.6 px (0.6%)
    assert np.allclose(eyes[:, 0], [3 / 8 * R, 5 / 8 * R], atol=0.01 * R)          # the recipe: eyes R / 4 apart, centred

def test_several_faces_and_face_index(finder):
    astro = skimage.data.astronaut()
    small = np.asarray(PIL.Image.fromarray(astro).resize((256, 256), PIL.Image.LANCZOS))
    canvas = np.full((600, 900, 3), 128, np.uint8)
    canvas[20:532, 380:892] = astro
    canvas[300:556, 20:276] = small
    out = align.align_photo(canvas, 128, finder=finder)
    assert len(out.faces) == 2 and out.face.box[0] > 380 and out.notes[0].startswith('2 faces found; aligned face 0')
    assert align.align_photo(canvas, 128, face_index=1, finder=finder).face.box[0] < 276
    with pytest.raises(SkipImage, match='--face-index 2: only 2 faces found'):
        align.align_photo(canvas, 128, face_index=2, finder=finder)

def test_tiny_and_upside_down_faces(finder):
    astro = skimage.data.astronaut()
    upside_down = np.ascontiguousarray(astro[::-1, ::-1])
    out = align.align_photo(upside_down, 128, finder=finder)
    assert out.face.rotated > 0 and any(n.startswith('face found with the photo turned by') for n in out.notes)
    assert abs(abs(out.face.roll) - 180) < 10 and any(n.startswith('face tilted by') for n in out.notes)
    again = finder(out.crop)[0]                                           # the crop is upright
    assert again.rotated == 0 and abs(again.roll) < 5
    # Small faces in a larger photo are found by the tile search; eyes 8 px apart are too few pixels.
    def on_canvas(size):
        canvas = np.full((640, 640, 3), 120, np.uint8)
        canvas[100:100 + size, 50:50 + size] = np.asarray(PIL.Image.fromarray(astro).resize((size, size), PIL.Image.LANCZOS))
        return canvas
    out = align.align_photo(on_canvas(160), 256, finder=finder)                     # eyes 13.6 px apart (measured)
    assert 50 < out.face.box[0] < 210 and any(n.startswith('small face: crop upscaled') for n in out.notes)
    with pytest.raises(SkipImage, match=r'^face too small: eyes \d+\.\d px apart \(need at least 12\)$'):
        align.align_photo(on_canvas(96), 256, finder=finder)                        # 8.2 px (measured)

def test_small_faces_are_reported():
    # The landmarks given directly (a stand-in finder): eyes 8 px apart are refused, 20 px apart upscaled with a note.
    def finder_of(eye_distance):
        d = eye_distance
        face = align.Face(eye_left=np.array([100.0, 100]), eye_right=np.array([100.0 + d, 100]), mouth_left=np.array([100.0, 100 + d]),
            mouth_right=np.array([100.0 + d, 100 + d]), box=np.array([90.0, 90, 110 + d, 110 + d]), score=0.9)
        return lambda _img: [face]
    photo = _smooth_image(300, 300)
    with pytest.raises(SkipImage, match=r'^face too small: eyes 8.0 px apart \(need at least 12\)$'):
        align.align_photo(photo, 256, finder=finder_of(8))
    out = align.align_photo(photo, 256, finder=finder_of(20))
    assert out.notes == ['small face: crop upscaled 3.2x (expect a blurry input)'] and out.crop.shape == (256, 256, 3)

#----------------------------------------------------------------------------
# Paste-back.

def test_paste_back_of_the_unedited_crop(finder):
    photo = skimage.data.astronaut()
    out = align.align_photo(photo, 256, finder=finder)
    pasted = align.paste_back(photo, out.crop, out.transform).astype(np.float64)
    mask = align.photo_mask(out.transform)[..., 0]
    outside = mask <= 0
    assert outside.mean() > 0.5 and np.array_equal(pasted[outside], photo[outside])    # untouched outside the mask
    # Inside: the round trip photo -> crop -> photo, compared with the same round trip through skimage.
    there = skimage.transform.warp(photo / 255.0, _skimage_map(out.transform.matrix), output_shape=(256, 256), order=3)
    back = skimage.transform.warp(there, _skimage_map(np.linalg.inv(out.transform.matrix)), output_shape=photo.shape[:2], order=3) * 255
    core = mask > 0.999
    ours, reference = np.abs(pasted - photo)[core].mean(), np.abs(back - photo)[core].mean()
    print(f'round-trip error inside the mask: ours {ours:.2f}, skimage {reference:.2f} levels')
    assert ours < 1.25 * reference + 0.5    # measured 0.71 vs 0.68 levels (ours also rounds to uint8)
    edited = 255 - out.crop                                                               # a real change shows inside only
    changed = np.abs(align.paste_back(photo, edited, out.transform).astype(np.float64) - photo).max(-1)
    assert changed[core].mean() > 50 and np.array_equal(changed[outside], np.zeros(outside.sum()))

def test_paste_back_of_a_quad_leaving_the_photo():
    photo = _smooth_image(300, 400)
    t = align.AlignTransform([[250, -60], [250, 160], [470, 160], [470, -60]], 128, (400, 300))   # top right corner cut off
    pasted = align.paste_back(photo, align.warp_to_crop(photo, t), t).astype(np.float64)
    m = align.photo_mask(t)[..., 0]
    assert np.array_equal(pasted[m <= 0], photo[m <= 0]) and align.quad_box(t) == (248, 0, 400, 162)
    assert np.abs(pasted - photo)[m > 0.999].mean() < 1.0          # smooth content: only the round trip's resampling error

def test_paste_back_mask_file_and_bad_sizes(finder):
    photo = skimage.data.astronaut()
    out = align.align_photo(photo, 128, finder=finder)
    half = np.zeros((64, 64), np.uint8)
    half[:, 32:] = 255                                                    # paste the right half of the crop only
    m = align.crop_mask(128, mask=half)
    assert m[:, :50].max() < 0.01 and m[40:88, 80:110].min() > 0.99
    with pytest.raises(ValueError, match='photo is 100x100'):
        align.paste_back(photo[:100, :100], out.crop, out.transform)

def test_without_mediapipe_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, 'mediapipe', None)                   # import mediapipe -> ImportError
    with pytest.raises(UserError, match=r'^--align: face alignment needs MediaPipe, an optional extra: pip install -e "\.\[align\]"'):
        align.FaceFinder()

#----------------------------------------------------------------------------
