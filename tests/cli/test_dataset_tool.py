"""stylegan2-dataset (stylegan2_ada_pytorch/dataset_tool.py) through click's CliRunner.

References are independent of the tool: idx files are parsed here with gzip + NumPy, expected
pixels are computed with NumPy (padding, slicing, alpha compositing, 16-bit scaling), and the
written datasets are read back with zipfile/PIL (and once with ImageFolderDataset).
"""

import gzip
import io
import json
import os
import zipfile

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch import dataset_tool
from stylegan2_ada_pytorch.dataset_tool import main, make_plan

from ..conftest import FASHION_DIR

FASHION_IMAGES = str(FASHION_DIR / 't10k-images-idx3-ubyte.gz')     # real idx files: a 4000-image slice (tests/data)
FASHION_LABELS = str(FASHION_DIR / 't10k-labels-idx1-ubyte.gz')

#----------------------------------------------------------------------------

def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])

def _read_idx_independently(path):
    """MNIST idx: 2 zero bytes, type byte, ndim byte, ndim big-endian uint32 sizes, then the data."""
    with gzip.open(path, 'rb') as f:
        data = f.read()
    assert data[:3] == b'\x00\x00\x08'
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], 'big') for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)

def _read_zip_dataset(path):
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        images = {i.filename: np.asarray(PIL.Image.open(io.BytesIO(zf.read(i.filename))))
            for i in infos if i.filename.endswith('.png')}
        modes = {i.filename: PIL.Image.open(io.BytesIO(zf.read(i.filename))).mode for i in infos if i.filename.endswith('.png')}
        meta = json.loads(zf.read('dataset.json'))
    return infos, images, modes, meta

def _leftovers(folder):
    return [n for n in os.listdir(folder) if n.startswith('.') or n.endswith('.partial')]

#----------------------------------------------------------------------------
# Real data: Fashion-MNIST test split.

def test_fashion_mnist_to_zip_pixels_and_labels(tmp_path):
    n = 64
    dest = tmp_path / 'fashion32.zip'
    result = _run('--source', FASHION_IMAGES, '--dest', dest, '--max-images', n, '--width', 32, '--height', 32)
    assert result.exit_code == 0, result.output
    assert 'Wrote 64 images (32x32, 1 channel(s))' in result.output

    ref_images = _read_idx_independently(FASHION_IMAGES)[:n]
    ref_labels = _read_idx_independently(FASHION_LABELS)[:n]
    assert ref_images.shape == (n, 28, 28)
    infos, images, modes, meta = _read_zip_dataset(dest)
    assert all(i.compress_type == zipfile.ZIP_STORED for i in infos)
    assert len(images) == n and len(infos) == n + 1
    for i in range(n):
        name = f'{i // 1000:05d}/img{i:08d}.png'
        assert modes[name] == 'L' and images[name].shape == (32, 32)
        np.testing.assert_array_equal(images[name], np.pad(ref_images[i], 2)) # 28x28 zero-padded to 32x32
    assert meta['labels'] == [[f'00000/img{i:08d}.png', int(ref_labels[i])] for i in range(n)]

    # The training dataset reads it back with one-hot labels.
    from stylegan2_ada_pytorch.training.dataset import ImageFolderDataset
    ds = ImageFolderDataset(str(dest), use_labels=True)
    assert len(ds) == n and ds.image_shape == [1, 32, 32] and ds.label_dim == int(ref_labels.max()) + 1
    img, onehot = ds[5]
    np.testing.assert_array_equal(img[0], np.pad(ref_images[5], 2))
    assert int(np.argmax(onehot)) == ref_labels[5] and onehot.sum() == 1
    ds.close()

def test_fashion_mnist_box_upscale_to_directory(tmp_path):
    n = 12
    dest = tmp_path / 'out'
    result = _run('--source', FASHION_IMAGES, '--dest', dest, '--max-images', n, '--width', 64, '--height', 64,
        '--resize-filter', 'box')
    assert result.exit_code == 0, result.output
    ref = np.pad(_read_idx_independently(FASHION_IMAGES)[:n], [(0, 0), (2, 2), (2, 2)])
    assert sorted(os.listdir(dest)) == ['00000', 'dataset.json']
    assert len(os.listdir(dest / '00000')) == n
    assert _leftovers(tmp_path) == []
    for i in range(n):
        got = np.asarray(PIL.Image.open(dest / '00000' / f'img{i:08d}.png'))
        np.testing.assert_array_equal(got, np.kron(ref[i], np.ones([2, 2], dtype=np.uint8))) # box x2 = replication

def test_idx_without_labels_file_gives_null_labels(tmp_path):
    images = np.random.RandomState(1).randint(0, 256, size=[5, 16, 16], dtype=np.uint8)
    path = tmp_path / 'tiny-images-idx3-ubyte'
    path.write_bytes(b'\x00\x00\x08\x03' + b''.join(int(d).to_bytes(4, 'big') for d in images.shape) + images.tobytes())
    result = _run('--source', path, '--dest', tmp_path / 'o.zip')
    assert result.exit_code == 0, result.output
    _infos, got, _modes, meta = _read_zip_dataset(tmp_path / 'o.zip')
    assert meta == {'labels': None}
    np.testing.assert_array_equal(got['00000/img00000004.png'], images[4]) # 16x16: no padding

def test_truncated_idx_is_a_clear_error(tmp_path):
    path = tmp_path / 'bad-images-idx3-ubyte'
    path.write_bytes(b'\x00\x00\x08\x03' + (10).to_bytes(4, 'big') + (28).to_bytes(4, 'big') * 2 + b'\x00' * 100)
    result = _run('--source', path, '--dest', tmp_path / 'o.zip')
    assert result.exit_code == 1
    assert 'bad-images-idx3-ubyte' in result.output and 'truncated' in result.output
    assert not (tmp_path / 'o.zip').exists() and _leftovers(tmp_path) == []

#----------------------------------------------------------------------------
# A folder of awkward images.

def _rgb(seed, size=16):
    return np.random.RandomState(seed).randint(0, 256, size=[size, size, 3], dtype=np.uint8)

@pytest.fixture
def mixed_folder(tmp_path):
    src = tmp_path / 'src'
    (src / 'sub').mkdir(parents=True)
    rnd = np.random.RandomState(5)
    px = dnnlib.EasyDict()
    px.rgb = _rgb(0)
    PIL.Image.fromarray(px.rgb).save(src / 'a_rgb.png')
    px.gray = rnd.randint(0, 256, size=[16, 16], dtype=np.uint8)
    PIL.Image.fromarray(px.gray).save(src / 'b_gray.png')
    px.rgba = rnd.randint(0, 256, size=[16, 16, 4], dtype=np.uint8)
    PIL.Image.fromarray(px.rgba, 'RGBA').save(src / 'c_rgba.png')
    px.deep = rnd.randint(0, 65536, size=[16, 16]).astype(np.uint16)
    PIL.Image.fromarray(px.deep).save(src / 'd_deep16.png') # 16-bit grayscale PNG
    (src / 'e_corrupt.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'definitely not a png body' * 4)
    PIL.Image.fromarray(_rgb(1, size=8)).save(src / 'f_small.png')
    px.rgb2 = _rgb(2)
    PIL.Image.fromarray(px.rgb2).save(src / 'sub' / 'g_rgb.jpg', quality=100, subsampling=0) # nested; JPEG is lossy
    (src / 'notes.txt').write_text('not an image')
    return src, px

def test_mixed_folder_converts_reports_and_exits_nonzero(tmp_path, mixed_folder):
    src, px = mixed_folder
    dest = tmp_path / 'mixed.zip'
    result = _run('--source', src, '--dest', dest)
    out = result.output
    assert result.exit_code == 1, out
    assert 'skipped e_corrupt.png: cannot read image file' in out
    assert 'skipped f_small.png: is 8x8 but the dataset is 16x16 (set by a_rgb.png)' in out
    assert '2 image(s) could not be converted' in out
    assert 'grayscale replicated to RGB' in out and 'b_gray.png' in out
    assert 'alpha composited over black: 1 image(s): c_rgba.png' in out
    assert '16-bit scaled to 8-bit: 1 image(s): d_deep16.png' in out
    assert 'notes.txt' not in out

    # The dataset of the convertible images is complete (written, then renamed into place).
    _infos, images, modes, meta = _read_zip_dataset(dest)
    assert _leftovers(tmp_path) == []
    assert meta == {'labels': None}
    assert set(modes.values()) == {'RGB'} and len(images) == 5
    got = [images[f'00000/img{i:08d}.png'] for i in range(5)] # sorted: a, b, c, d, sub/g
    np.testing.assert_array_equal(got[0], px.rgb)
    np.testing.assert_array_equal(got[1], np.repeat(px.gray[..., None], 3, axis=2))
    alpha = px.rgba[..., 3:].astype(np.float64) / 255
    np.testing.assert_array_equal(got[2], np.round(px.rgba[..., :3] * alpha).astype(np.uint8))
    deep8 = np.round(px.deep.astype(np.float64) * 255 / 65535).astype(np.uint8)
    np.testing.assert_array_equal(got[3], np.repeat(deep8[..., None], 3, axis=2))
    assert np.abs(got[4].astype(int) - px.rgb2).mean() < 3 # JPEG q100 4:4:4 round trip

def test_all_grayscale_folder_stays_one_channel(tmp_path):
    src = tmp_path / 'g'
    src.mkdir()
    grays = np.random.RandomState(3).randint(0, 256, size=[3, 8, 8], dtype=np.uint8)
    for i, g in enumerate(grays):
        PIL.Image.fromarray(g).save(src / f'{i}.png')
    result = _run('--source', src, '--dest', tmp_path / 'g.zip')
    assert result.exit_code == 0, result.output
    _infos, images, modes, _meta = _read_zip_dataset(tmp_path / 'g.zip')
    assert set(modes.values()) == {'L'}
    np.testing.assert_array_equal(images['00000/img00000002.png'], grays[2])

def test_labels_and_max_images_from_a_zip_source(tmp_path):
    zpath = tmp_path / 'src.zip'
    imgs = [_rgb(s, size=8) for s in range(4)]
    with zipfile.ZipFile(zpath, 'w') as zf:
        for i, img in enumerate(imgs):
            buf = io.BytesIO()
            PIL.Image.fromarray(img).save(buf, format='png')
            zf.writestr(f'cls/{i}.png', buf.getvalue())
        zf.writestr('dataset.json', json.dumps({'labels': [[f'cls/{i}.png', 10 + i] for i in range(4)]}))
    result = _run('--source', zpath, '--dest', tmp_path / 'out', '--max-images', 3)
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / 'out' / 'dataset.json').read_text())
    assert meta['labels'] == [[f'00000/img{i:08d}.png', 10 + i] for i in range(3)]
    assert len(os.listdir(tmp_path / 'out' / '00000')) == 3
    np.testing.assert_array_equal(np.asarray(PIL.Image.open(tmp_path / 'out' / '00000' / 'img00000001.png')), imgs[1])

def test_center_crop_and_center_crop_wide(tmp_path):
    src = tmp_path / 's'
    src.mkdir()
    wide = _rgb(4, size=32)[:16] # 32 wide, 16 high
    PIL.Image.fromarray(wide).save(src / 'w.png')
    result = _run('--source', src, '--dest', tmp_path / 'cc.zip', '--transform', 'center-crop', '--width', 16, '--height', 16)
    assert result.exit_code == 0, result.output
    _i, images, _m, _meta = _read_zip_dataset(tmp_path / 'cc.zip')
    np.testing.assert_array_equal(images['00000/img00000000.png'], wide[:, 8:24]) # central 16x16, no resize

    result = _run('--source', src, '--dest', tmp_path / 'ccw.zip', '--transform', 'center-crop-wide',
        '--width', 16, '--height', 8, '--resize-filter', 'box')
    assert result.exit_code == 0, result.output
    _i, images, _m, _meta = _read_zip_dataset(tmp_path / 'ccw.zip')
    got = images['00000/img00000000.png'].astype(int)
    assert got.shape == (16, 16, 3)
    assert (got[:4] == 0).all() and (got[12:] == 0).all() # letterbox bars
    block_mean = wide.astype(np.float64).reshape(8, 2, 16, 2, 3).mean(axis=(1, 3))
    assert np.abs(got[4:12] - block_mean).max() <= 1 # box filter, 2x down

#----------------------------------------------------------------------------
# Fatal errors: one clear line, exit status 1, nothing written.

def _assert_nothing_written(folder, dest):
    assert not os.path.exists(dest) or (os.path.isdir(dest) and os.listdir(dest) == [])
    assert _leftovers(folder) == []

@pytest.mark.parametrize('size, words', [((12, 12), 'power of two'), ((16, 8), 'square')])
def test_first_image_with_unusable_size_is_fatal(tmp_path, size, words):
    src = tmp_path / 's'
    src.mkdir()
    PIL.Image.fromarray(np.zeros([size[1], size[0], 3], np.uint8)).save(src / 'first.png')
    PIL.Image.fromarray(np.zeros([16, 16, 3], np.uint8)).save(src / 'second.png')
    result = _run('--source', src, '--dest', tmp_path / 'o.zip')
    assert result.exit_code == 1
    assert words in result.output and 'first.png' in result.output
    _assert_nothing_written(tmp_path, tmp_path / 'o.zip')

def test_nothing_convertible_is_fatal(tmp_path):
    src = tmp_path / 's'
    src.mkdir()
    (src / 'x.png').write_bytes(b'junk')
    (src / 'y.jpg').write_bytes(b'')
    result = _run('--source', src, '--dest', tmp_path / 'out')
    assert result.exit_code == 1
    assert 'skipped x.png' in result.output and 'skipped y.jpg' in result.output
    assert 'no image could be converted' in result.output
    _assert_nothing_written(tmp_path, tmp_path / 'out')

def test_bad_arguments(tmp_path):
    (tmp_path / 'full').mkdir()
    (tmp_path / 'full' / 'x').write_text('x')
    src = tmp_path / 's'
    src.mkdir()
    PIL.Image.fromarray(np.zeros([8, 8], np.uint8)).save(src / 'a.png')
    cases = [
        (['--source', tmp_path / 'missing', '--dest', tmp_path / 'o.zip'], 'no such file or directory'),
        (['--source', tmp_path / 'full' / 'x', '--dest', tmp_path / 'o.zip'], 'unsupported source'),
        (['--source', src, '--dest', tmp_path / 'full'], 'must be empty'),
        (['--source', src, '--dest', tmp_path / 'o.zip', '--transform', 'center-crop'], 'needs both --width and --height'),
        (['--source', src, '--dest', tmp_path / 'o.zip', '--width', 48, '--height', 48], 'power of two'),
        (['--source', src, '--dest', tmp_path / 'o.zip', '--width', 32, '--height', 16], 'square'),
        (['--source', src, '--dest', tmp_path / 'o.zip', '--max-images', 0], '--max-images'),
    ]
    for args, words in cases:
        result = _run(*args)
        assert result.exit_code == 1, (args, result.output)
        assert words in result.output, (args, result.output)
        assert result.output.count('\n') == 1 # one line
    assert not (tmp_path / 'o.zip').exists() and _leftovers(tmp_path) == []
    assert _run('--source', src, '--dest', tmp_path / 'o.zip', '--resize-filter', 'bicubic').exit_code == 2 # click usage error

def test_interrupt_leaves_no_partial_output(tmp_path, monkeypatch):
    src = tmp_path / 's'
    src.mkdir()
    for i in range(4):
        PIL.Image.fromarray(_rgb(i, size=8)).save(src / f'{i}.png')
    calls = []
    real_encode = dataset_tool.encode_png
    def flaky_encode(arr):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_encode(arr)
    monkeypatch.setattr(dataset_tool, 'encode_png', flaky_encode)
    for dest in (tmp_path / 'o.zip', tmp_path / 'odir'):
        calls.clear()
        with pytest.raises(KeyboardInterrupt):
            dataset_tool.convert_dataset(make_plan(str(src), str(dest)))
        _assert_nothing_written(tmp_path, dest)

def test_existing_zip_is_replaced_only_when_complete(tmp_path):
    src = tmp_path / 's'
    src.mkdir()
    PIL.Image.fromarray(_rgb(0, size=8)).save(src / 'a.png')
    dest = tmp_path / 'o.zip'
    dest.write_bytes(b'old dataset')
    (src / 'b.png').write_bytes(b'junk') # sorted after a.png: the run succeeds with one skip
    bad = _run('--source', tmp_path / 'nonexistent', '--dest', dest)
    assert bad.exit_code == 1 and dest.read_bytes() == b'old dataset'
    result = _run('--source', src, '--dest', dest)
    assert result.exit_code == 1 and 'skipped b.png' in result.output
    assert zipfile.is_zipfile(dest) and _leftovers(tmp_path) == []

def test_make_plan_is_pure(tmp_path):
    plan = make_plan(str(tmp_path), str(tmp_path / 'new' / 'sub'), max_images=3, width=64, height=64)
    assert plan.source_type == 'dir' and plan.dest_type == 'dir' and plan.out_size == (64, 64)
    assert not (tmp_path / 'new').exists()
    with pytest.raises(dnnlib.UserError, match='center-crop-wide needs --height'):
        make_plan(str(tmp_path), str(tmp_path / 'o.zip'), transform='center-crop-wide', width=16, height=32)

#----------------------------------------------------------------------------
