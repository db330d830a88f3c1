"""training/dataset.py: folder/zip equivalence, labels, xflip, max_size subsets, clear errors.

Expected pixels come from the NumPy arrays the test itself saved as PNG; expected subsets are
recomputed with NumPy's RandomState; nothing is compared with the dataset's own earlier output.
"""

import json
import multiprocessing
import os
import pickle
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

from stylegan2_ada_pytorch.training.dataset import Dataset, ImageFolderDataset

#----------------------------------------------------------------------------

def _make_images(n, res=8, channels=3, seed=0):
    rnd = np.random.RandomState(seed)
    shape = [n, res, res, channels] if channels == 3 else [n, res, res]
    return rnd.randint(0, 256, size=shape, dtype=np.uint8)

def _write_folder(root, images, labels=None):
    """Images as <i//3>/img<i>.png (nested, to exercise the recursive walk); optional dataset.json."""
    names = []
    for i, img in enumerate(images):
        name = f'{i // 3:05d}/img{i:08d}.png'
        os.makedirs(root / os.path.dirname(name), exist_ok=True)
        PIL.Image.fromarray(img).save(root / name)
        names.append(name)
    if labels is not None:
        with open(root / 'dataset.json', 'w') as f:
            json.dump({'labels': [[n, l] for n, l in zip(names, labels)]}, f)
    return names

def _zip_folder(root, zip_path):
    with zipfile.ZipFile(zip_path, 'w', compression=zipfile.ZIP_STORED) as zf:
        for dirpath, _dirs, files in os.walk(root):
            for fname in files:
                full = os.path.join(dirpath, fname)
                zf.write(full, os.path.relpath(full, root).replace(os.sep, '/'))

@pytest.fixture
def rgb_dataset(tmp_path):
    images = _make_images(7)
    labels = [3, 0, 5, 1, 5, 2, 0]
    folder = tmp_path / 'rgbset'
    _write_folder(folder, images, labels)
    zip_path = tmp_path / 'rgbset.zip'
    _zip_folder(folder, zip_path)
    return images, labels, folder, zip_path

#----------------------------------------------------------------------------

def test_folder_and_zip_give_identical_items(rgb_dataset):
    images, _labels, folder, zip_path = rgb_dataset
    ds_dir = ImageFolderDataset(str(folder), use_labels=True)
    ds_zip = ImageFolderDataset(str(zip_path), use_labels=True)
    assert len(ds_dir) == len(ds_zip) == len(images)
    assert ds_dir.name == ds_zip.name == 'rgbset'
    assert ds_dir.image_shape == ds_zip.image_shape == [3, 8, 8]
    assert ds_dir.resolution == 8 and ds_dir.num_channels == 3
    for i in range(len(images)):
        (a, la), (b, lb) = ds_dir[i], ds_zip[i]
        assert a.dtype == np.uint8 and a.shape == (3, 8, 8)
        np.testing.assert_array_equal(a, images[i].transpose(2, 0, 1)) # HWC written -> CHW read
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    ds_zip.close()

def test_int_labels_are_one_hot(rgb_dataset):
    _images, labels, folder, _zip = rgb_dataset
    ds = ImageFolderDataset(str(folder), use_labels=True)
    assert ds.has_labels and ds.has_onehot_labels
    assert ds.label_shape == [max(labels) + 1] and ds.label_dim == 6
    for i, lab in enumerate(labels):
        expected = np.zeros(6, dtype=np.float32)
        expected[lab] = 1
        got = ds.get_label(i)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)
        assert ds.get_details(i).raw_label == lab

def test_labels_off_give_empty_vectors(rgb_dataset):
    _images, _labels, folder, _zip = rgb_dataset
    ds = ImageFolderDataset(str(folder), use_labels=False)
    assert not ds.has_labels and ds.label_shape == [0]
    _img, label = ds[0]
    assert label.shape == (0,) and label.dtype == np.float32

def test_float_vector_labels(tmp_path):
    images = _make_images(4, channels=1)
    vecs = [[0.5, -1.0], [1.5, 2.0], [0.0, 0.25], [3.0, 1.0]]
    _write_folder(tmp_path / 'f', images, vecs)
    ds = ImageFolderDataset(str(tmp_path / 'f'), use_labels=True)
    assert ds.image_shape == [1, 8, 8] and not ds.has_onehot_labels and ds.label_shape == [2]
    for i in range(4):
        img, label = ds[i]
        np.testing.assert_array_equal(img[0], images[i])
        np.testing.assert_array_equal(label, np.float32(vecs[i]))

def test_xflip_doubles_and_mirrors(rgb_dataset):
    images, _labels, _folder, zip_path = rgb_dataset
    ds = ImageFolderDataset(str(zip_path), xflip=True, use_labels=True)
    n = len(images)
    assert len(ds) == 2 * n
    for i in range(n):
        plain, lp = ds[i]
        flipped, lf = ds[n + i]
        np.testing.assert_array_equal(plain, images[i].transpose(2, 0, 1))
        np.testing.assert_array_equal(flipped, images[i][:, ::-1, :].transpose(2, 0, 1)) # mirror along x
        np.testing.assert_array_equal(lp, lf)
        assert not ds.get_details(i).xflip and ds.get_details(n + i).xflip

def test_max_size_subset_is_seeded_and_sorted(rgb_dataset):
    images, _labels, folder, _zip = rgb_dataset
    for seed in (0, 1, 7):
        ds = ImageFolderDataset(str(folder), max_size=4, random_seed=seed)
        expected = np.arange(len(images))
        np.random.RandomState(seed).shuffle(expected)
        expected = sorted(expected[:4])
        got = [ds.get_details(i).raw_idx for i in range(len(ds))]
        assert got == expected
        for i, raw in enumerate(expected):
            np.testing.assert_array_equal(ds[i][0], images[raw].transpose(2, 0, 1))
    # A limit at or above the size keeps everything, in order.
    ds = ImageFolderDataset(str(folder), max_size=100)
    assert [ds.get_details(i).raw_idx for i in range(len(ds))] == list(range(len(images)))
    # max_size applies before xflip.
    assert len(ImageFolderDataset(str(folder), max_size=4, xflip=True)) == 8

def test_requested_resolution_mismatch_names_the_file(rgb_dataset):
    _images, _labels, folder, _zip = rgb_dataset
    with pytest.raises(IOError) as e:
        ImageFolderDataset(str(folder), resolution=16)
    msg = str(e.value)
    assert 'img00000000.png' in msg and '8x8' in msg and '16x16' in msg

def test_image_of_other_size_names_the_file(tmp_path):
    images = _make_images(3)
    names = _write_folder(tmp_path / 'd', images)
    PIL.Image.fromarray(_make_images(1, res=16)[0]).save(tmp_path / 'd' / names[2])
    ds = ImageFolderDataset(str(tmp_path / 'd'))
    ds[0], ds[1]
    with pytest.raises(IOError, match='img00000002.png') as e:
        ds[2]
    assert '[3, 16, 16]' in str(e.value) and '[3, 8, 8]' in str(e.value)

def test_bad_paths_and_empty_folders(tmp_path):
    with pytest.raises(IOError, match='directory or a .zip'):
        ImageFolderDataset(str(tmp_path / 'nothing.txt'))
    (tmp_path / 'empty').mkdir()
    with pytest.raises(IOError, match='no image files'):
        ImageFolderDataset(str(tmp_path / 'empty'))

def test_missing_label_is_reported(tmp_path):
    images = _make_images(3)
    names = _write_folder(tmp_path / 'd', images, labels=[0, 1, 2])
    with open(tmp_path / 'd' / 'dataset.json', 'w') as f:
        json.dump({'labels': [[names[0], 0], [names[1], 1]]}, f)
    ds = ImageFolderDataset(str(tmp_path / 'd'), use_labels=True)
    with pytest.raises(IOError, match='img00000002.png'):
        ds.get_label(0)

def test_pickling_drops_cached_labels_and_zip_handle(rgb_dataset):
    _images, labels, _folder, zip_path = rgb_dataset
    ds = ImageFolderDataset(str(zip_path), use_labels=True)
    ds[0] # opens the zip and caches labels
    assert ds._zip._zipfile is not None and ds._raw_labels is not None
    state = ds.__getstate__()
    assert state['_raw_labels'] is None
    clone = pickle.loads(pickle.dumps(ds)) # what a spawned DataLoader worker receives  # safe: bytes this test just made
    assert clone._zip._zipfile is None and clone._raw_labels is None
    img, label = clone[3]
    np.testing.assert_array_equal(img, ds[3][0])
    assert int(np.argmax(label)) == labels[3]
    assert clone._zip._zipfile is not None # reopened lazily in the "worker"
    clone.close()
    assert clone._zip._zipfile is None

def _forked_child(ds, queue):
    inherited = ds._zip._zipfile
    handle = ds._zip.get()
    queue.put((inherited is not None, handle is not inherited, ds[2][0]))

@pytest.mark.skipif(not hasattr(os, 'fork'), reason='needs fork (the DataLoader default on Linux)')
def test_forked_process_opens_its_own_zip_handle(rgb_dataset):
    images, _labels, _folder, zip_path = rgb_dataset
    ds = ImageFolderDataset(str(zip_path))
    ds[0] # the parent now holds an open handle, as snapshot_images.setup leaves it
    ctx = multiprocessing.get_context('fork')
    queue = ctx.Queue()
    proc = ctx.Process(target=_forked_child, args=(ds, queue))
    proc.start()
    had_handle, reopened, img = queue.get(timeout=60)
    proc.join(timeout=60)
    assert proc.exitcode == 0 and had_handle and reopened
    np.testing.assert_array_equal(img, images[2].transpose(2, 0, 1))
    np.testing.assert_array_equal(ds[1][0], images[1].transpose(2, 0, 1)) # the parent's handle still works

@pytest.mark.skipif(not hasattr(os, 'fork'), reason='needs fork (the DataLoader default on Linux)')
def test_loader_workers_and_parent_read_one_zip_at_once(tmp_path):
    # The training loop's pattern: the parent reads the zip (grids) while forked workers load batches.
    images = _make_images(48, res=16)
    _write_folder(tmp_path / 'd', images)
    _zip_folder(tmp_path / 'd', tmp_path / 'd.zip')
    ds = ImageFolderDataset(str(tmp_path / 'd.zip'))
    ds[0]
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context='fork')
    seen = 0
    for _round in range(3):
        for batch_idx, (batch, _labels) in enumerate(loader):
            for k in range(4):
                np.testing.assert_array_equal(ds[(batch_idx * 7 + k) % 48][0], images[(batch_idx * 7 + k) % 48].transpose(2, 0, 1))
            np.testing.assert_array_equal(batch.numpy(), images[batch_idx * 4:(batch_idx + 1) * 4].transpose(0, 3, 1, 2))
            seen += len(batch)
    assert seen == 3 * 48

def test_base_class_one_hot_and_subset_without_files():
    class Synthetic(Dataset):
        def _load_raw_image(self, raw_idx):
            return np.full([1, 4, 4], raw_idx, dtype=np.uint8)
        def _load_raw_labels(self):
            return np.array([2, 0, 1, 2, 0], dtype=np.int64)
    ds = Synthetic(name='syn', raw_shape=[5, 1, 4, 4], use_labels=True, xflip=True)
    assert len(ds) == 10 and ds.label_shape == [3]
    img, label = ds[7] # second half = flipped copies; 7 -> raw item 2, label 1
    assert img[0, 0, 0] == 2 and ds.get_details(7).xflip
    np.testing.assert_array_equal(label, [0, 1, 0])

#----------------------------------------------------------------------------
