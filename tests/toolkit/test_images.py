"""stylegan2_ada_pytorch/images.py: listing, decoding, channel-count conversions and atomic image writes.

Expected pixels are computed here with NumPy formulas or with PIL called directly, never with the
module under test.
"""

import os
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

from stylegan2_ada_pytorch import dnnlib, images

#----------------------------------------------------------------------------

def _rgb(h, w, seed=0):
    return np.random.RandomState(seed).randint(0, 256, size=[h, w, 3], dtype=np.uint8)

def test_list_images_in_folder_zip_and_file(tmp_path):
    folder = tmp_path / 'photos'
    (folder / 'sub').mkdir(parents=True)
    for name in ['b.png', 'sub/a.jpg', 'sub/b.png', '.hidden.png']:
        PIL.Image.fromarray(_rgb(8, 8)).save(folder / name)
    (folder / 'notes.txt').write_text('x')
    entries, ignored = images.list_images(folder)
    assert [e.relpath for e in entries] == ['b.png', 'sub/a.jpg', 'sub/b.png'] and ignored == ['notes.txt']
    assert [e.stem for e in entries] == ['b', 'a', 'b-2']
    with zipfile.ZipFile(tmp_path / 'p.zip', 'w') as zf:
        zf.write(folder / 'sub' / 'b.png', 'x/b.png')
        zf.writestr('readme.md', 'x')
    entries, ignored = images.list_images(tmp_path / 'p.zip')
    assert [(e.name, e.relpath) for e in entries] == [('p.zip:x/b.png', 'x/b.png')] and ignored == ['readme.md']
    np.testing.assert_array_equal(np.asarray(images.decode(entries[0])), np.asarray(PIL.Image.open(folder / 'sub' / 'b.png')))
    entries, ignored = images.list_images(folder / 'b.png')
    assert [e.name for e in entries] == ['b.png'] and ignored == []
    with pytest.raises(dnnlib.UserError, match='--input: no such file or folder'):
        images.list_images(tmp_path / 'missing')
    (tmp_path / 'bad.zip').write_bytes(b'not a zip')
    with pytest.raises(dnnlib.UserError, match='--src: .*bad.zip: cannot open zip file'):
        images.list_images(tmp_path / 'bad.zip', flag='--src')

def test_unreadable_file_raises_skip_image(tmp_path):
    (tmp_path / 'x.png').write_bytes(b'junk')
    with pytest.raises(images.SkipImage, match='cannot read image file'):
        images.read_image(tmp_path / 'x.png', 8)

def test_grayscale_network_reads_luma_like_pil(tmp_path):
    # A 1-channel network (the Fashion-MNIST demo) gets PIL's 'L' conversion, then the centre crop and Lanczos resize.
    arr = _rgb(40, 60)
    PIL.Image.fromarray(arr).save(tmp_path / 'c.png')
    out, notes = images.read_image(tmp_path / 'c.png', 16, channels=1)
    ref = PIL.Image.fromarray(arr).convert('L').crop((10, 0, 50, 40)).resize((16, 16), PIL.Image.LANCZOS)
    assert out.shape == (16, 16, 1) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :, 0], np.asarray(ref))
    assert notes == ['mode RGB: RGB converted to grayscale', 'center-crop 60x40 -> 40x40', 'resize 40x40 -> 16x16 (Lanczos)']

def test_rgb_network_replicates_grayscale(tmp_path):
    gray = _rgb(8, 8)[:, :, 0]
    PIL.Image.fromarray(gray, 'L').save(tmp_path / 'g.png')
    out, notes = images.read_image(tmp_path / 'g.png', 8, channels=3)
    np.testing.assert_array_equal(out, np.repeat(gray[:, :, None], 3, axis=2))
    assert notes == ['mode L: grayscale replicated to RGB']
    out, notes = images.read_image(tmp_path / 'g.png', None, channels=1)
    np.testing.assert_array_equal(out[:, :, 0], gray)
    assert notes == []

def test_alpha_is_composited_over_black_and_16_bit_scaled(tmp_path):
    rgba = np.random.RandomState(1).randint(0, 256, size=[8, 8, 4], dtype=np.uint8)
    PIL.Image.fromarray(rgba, 'RGBA').save(tmp_path / 'a.png')
    out, notes = images.read_image(tmp_path / 'a.png', None, channels=3)
    expected = np.floor(rgba[:, :, :3].astype(np.float64) * rgba[:, :, 3:] / 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)
    assert notes == ['mode RGBA: alpha composited over black']
    v16 = np.random.RandomState(2).randint(0, 65536, size=[8, 8]).astype(np.uint16)
    PIL.Image.fromarray(v16).save(tmp_path / 'd.png')
    out, _notes = images.read_image(tmp_path / 'd.png', None, channels=1)
    np.testing.assert_array_equal(out[:, :, 0], np.floor(v16 / 257.0 + 0.5).astype(np.uint8))

def test_save_image_writes_l_or_rgb_atomically(tmp_path):
    gray = _rgb(6, 6)[:, :, :1]
    images.save_image(tmp_path / 'g.png', gray)
    images.save_image(tmp_path / 'c.png', torch.from_numpy(_rgb(6, 6)))
    with PIL.Image.open(tmp_path / 'g.png') as img:
        assert img.mode == 'L'
        np.testing.assert_array_equal(np.asarray(img), gray[:, :, 0])
    with PIL.Image.open(tmp_path / 'c.png') as img:
        assert img.mode == 'RGB'
        np.testing.assert_array_equal(np.asarray(img), _rgb(6, 6))
    with pytest.raises(ValueError, match='expected uint8'):
        images.save_image(tmp_path / 'bad.png', np.zeros([4, 4, 2], np.uint8))
    assert sorted(os.listdir(tmp_path)) == ['c.png', 'g.png']

def test_to_uint8_matches_the_toolkit_formula():
    x = torch.tensor([-2.0, -1.0, 0.0, 0.5, 1.0]).reshape(1, 1, 1, 5)
    out = images.to_uint8(x)
    assert out.shape == (1, 1, 5, 1) and out.dtype == torch.uint8
    assert out.flatten().tolist() == [0, 0, 128, 191, 255]   # clamp(x * 127.5 + 128), truncated

#----------------------------------------------------------------------------
