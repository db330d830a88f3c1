"""Training datasets in the layout written by `dataset_tool.py` (StyleGAN2-ADA, Karras et al. 2020).

`Dataset` is the abstract base: it owns the index list (optional random subset, optional x-flip
duplication) and the labels; subclasses only load raw images and raw labels. `ImageFolderDataset`
reads a directory tree or a `.zip` of PNG/JPEG files, with labels from an optional `dataset.json`
(`{"labels": [["00000/img00000000.png", 6], ...]}`).

Shape letters: N = number of raw images, C = channels (1 or 3), H/W = image height/width.
Items are `(uint8 ndarray [C, H, W], float32 label)`; labels are one-hot for integer raw labels,
the raw float vector for 2-D raw labels, and shape [0] when labels are off.

Example:
    >>> ds = ImageFolderDataset('~/datasets/ffhq256.zip', use_labels=False, xflip=True, max_size=1000)
    >>> img, label = ds[0]          # img: uint8 [3, 256, 256], label: float32 [0]
    >>> ds.resolution, len(ds)
    (256, 2000)
"""

import abc
import json
import os

import numpy as np
import torch

from .. import dnnlib
from .. import images

#----------------------------------------------------------------------------

class Dataset(torch.utils.data.Dataset, abc.ABC):
    """Index bookkeeping and labels shared by all datasets; subclasses load the raw data."""

    def __init__(self,
        name,                   # Name of the dataset.
        raw_shape,              # Shape of the raw image data [N, C, H, W].
        max_size    = None,     # Keep a random subset of at most this many images (before xflip); None = all.
        use_labels  = False,    # Return labels? False = labels of shape [0].
        xflip       = False,    # Append an x-flipped copy of every image (doubles the length)?
        random_seed = 0,        # Seed of the RandomState that picks the max_size subset.
    ):
        self._name = name
        self._raw_shape = list(raw_shape)
        self._use_labels = use_labels
        self._raw_labels = None
        self._label_shape = None

        self._raw_idx = np.arange(self._raw_shape[0], dtype=np.int64)
        if max_size is not None and self._raw_idx.size > max_size:
            np.random.RandomState(random_seed).shuffle(self._raw_idx)
            self._raw_idx = np.sort(self._raw_idx[:max_size])

        self._xflip = np.zeros(self._raw_idx.size, dtype=np.uint8)
        if xflip:
            self._raw_idx = np.tile(self._raw_idx, 2)
            self._xflip = np.concatenate([self._xflip, np.ones_like(self._xflip)])

    def _get_raw_labels(self):
        if self._raw_labels is None:
            self._raw_labels = self._load_raw_labels() if self._use_labels else None
            if self._raw_labels is None:
                self._raw_labels = np.zeros([self._raw_shape[0], 0], dtype=np.float32)
            self._check_raw_labels(self._raw_labels)
        return self._raw_labels

    def _check_raw_labels(self, labels):
        if not isinstance(labels, np.ndarray) or labels.shape[0] != self._raw_shape[0]:
            raise IOError(f'{self._name}: expected {self._raw_shape[0]} labels, got {getattr(labels, "shape", None)}')
        if labels.dtype == np.int64:
            if labels.ndim != 1 or (labels.size and labels.min() < 0):
                raise IOError(f'{self._name}: integer labels must be a 1-D array of class indices >= 0')
        elif labels.dtype != np.float32 or labels.ndim < 2:
            raise IOError(f'{self._name}: labels must be int64 class indices [N] or float32 arrays [N, ...]')

    def close(self): # Release open files; the dataset stays usable (files reopen on demand).
        pass

    @abc.abstractmethod
    def _load_raw_image(self, raw_idx):
        """The raw image `raw_idx` as a uint8 ndarray [C, H, W] (subclasses implement it)."""

    @abc.abstractmethod
    def _load_raw_labels(self):
        """All raw labels as an ndarray, or None when the dataset has none (subclasses implement it)."""

    def __getstate__(self):
        return dict(self.__dict__, _raw_labels=None)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __len__(self):
        return self._raw_idx.size

    def __getitem__(self, idx):
        image = self._load_raw_image(self._raw_idx[idx])
        self._check_image(image, self._raw_idx[idx])
        if self._xflip[idx]:
            image = image[:, :, ::-1]
        return image.copy(), self.get_label(idx)

    def _check_image(self, image, raw_idx):
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or list(image.shape) != self.image_shape:
            what = f'{getattr(image, "dtype", type(image))} {list(getattr(image, "shape", []))}'
            raise IOError(f'{self._describe_raw(raw_idx)}: got {what}, expected uint8 {self.image_shape} '
                '(all images must share size and channels)')

    def _describe_raw(self, raw_idx): # Human-readable name of a raw item, for error messages.
        return f'{self._name}[{int(raw_idx)}]'

    def get_label(self, idx):
        label = self._get_raw_labels()[self._raw_idx[idx]]
        if label.dtype == np.int64:
            onehot = np.zeros(self.label_shape, dtype=np.float32)
            onehot[label] = 1
            label = onehot
        return label.copy()

    def get_details(self, idx):
        d = dnnlib.EasyDict()
        d.raw_idx = int(self._raw_idx[idx])
        d.xflip = (int(self._xflip[idx]) != 0)
        d.raw_label = self._get_raw_labels()[d.raw_idx].copy()
        return d

    @property
    def name(self):
        return self._name

    @property
    def image_shape(self):
        return list(self._raw_shape[1:])

    @property
    def num_channels(self):
        assert len(self.image_shape) == 3 # CHW
        return self.image_shape[0]

    @property
    def resolution(self):
        assert len(self.image_shape) == 3 # CHW
        assert self.image_shape[1] == self.image_shape[2], f'{self._name}: images are not square: {self.image_shape}'
        return self.image_shape[1]

    @property
    def label_shape(self):
        if self._label_shape is None:
            raw_labels = self._get_raw_labels()
            if raw_labels.dtype == np.int64:
                self._label_shape = [int(np.max(raw_labels)) + 1] if raw_labels.size else [0]
            else:
                self._label_shape = list(raw_labels.shape[1:])
        return list(self._label_shape)

    @property
    def label_dim(self):
        assert len(self.label_shape) == 1
        return self.label_shape[0]

    @property
    def has_labels(self):
        return any(x != 0 for x in self.label_shape)

    @property
    def has_onehot_labels(self):
        return self._get_raw_labels().dtype == np.int64

#----------------------------------------------------------------------------

class ImageFolderDataset(Dataset):
    """Images from a directory (searched recursively) or a `.zip`, as written by dataset_tool.

    Files are those whose lowercase extension PIL knows, in sorted order of their relative path
    (`/` separators). The image shape is taken from the first file; every item is checked against
    it when loaded, and a mismatch raises an IOError naming the file. A zip is opened once per
    process (`images.ZipReader`), so DataLoader workers forked from a process that already read
    the zip get their own handle.
    """

    def __init__(self,
        path,                   # Path to a directory or a .zip file.
        resolution  = None,     # Expected resolution; None = whatever the first image has.
        **super_kwargs,         # Arguments of Dataset: max_size, use_labels, xflip, random_seed.
    ):
        self._path = os.path.expanduser(path)
        self._zip = None

        if os.path.isdir(self._path):
            self._type = 'dir'
            self._all_fnames = {os.path.relpath(os.path.join(root, fname), start=self._path).replace(os.sep, '/')
                for root, _dirs, files in os.walk(self._path) for fname in files}
        elif self._file_ext(self._path) == '.zip':
            if not os.path.isfile(self._path):
                raise IOError(f'{path}: no such zip file')
            self._type = 'zip'
            self._zip = images.ZipReader(self._path)
            self._all_fnames = set(self._zip.get().namelist())
        else:
            raise IOError(f'{path}: dataset path must point to a directory or a .zip file')

        self._image_fnames = images.image_names(self._all_fnames)
        if len(self._image_fnames) == 0:
            raise IOError(f'{path}: no image files found')

        name = os.path.splitext(os.path.basename(self._path.rstrip('/\\')))[0]
        raw_shape = [len(self._image_fnames)] + list(self._load_raw_image(0).shape)
        if resolution is not None and (raw_shape[2] != resolution or raw_shape[3] != resolution):
            raise IOError(f'{self._describe_raw(0)}: image is {raw_shape[3]}x{raw_shape[2]}, '
                f'expected the requested resolution {resolution}x{resolution}')
        super().__init__(name=name, raw_shape=raw_shape, **super_kwargs)

    @staticmethod
    def _file_ext(fname):
        return os.path.splitext(fname)[1].lower()

    def _open_file(self, fname):
        if self._type == 'dir':
            return open(os.path.join(self._path, fname), 'rb')
        return self._zip.get().open(fname, 'r')

    def close(self):
        if self._zip is not None:
            self._zip.close()

    def _describe_raw(self, raw_idx):
        return os.path.join(self._path, self._image_fnames[int(raw_idx)])

    def _load_raw_image(self, raw_idx):
        fname = self._image_fnames[raw_idx]
        try:
            with self._open_file(fname) as f:
                image = images.decode_raw(f, fname)
        except (OSError, ValueError, SyntaxError) as e:
            raise IOError(f'{self._describe_raw(raw_idx)}: cannot decode image ({e})') from e
        if image.ndim == 2:
            image = image[:, :, np.newaxis] # HW => HWC
        if image.ndim != 3 or image.dtype != np.uint8:
            raise IOError(f'{self._describe_raw(raw_idx)}: unsupported pixel format {image.dtype} {list(image.shape)} '
                '(expected 8-bit grayscale or RGB; convert it with stylegan2-dataset)')
        return image.transpose(2, 0, 1) # HWC => CHW

    def _load_raw_labels(self):
        fname = 'dataset.json'
        if fname not in self._all_fnames:
            return None
        with self._open_file(fname) as f:
            labels = json.load(f).get('labels')
        if labels is None:
            return None
        labels = dict(labels)
        missing = [fname for fname in self._image_fnames if fname not in labels]
        if missing:
            raise IOError(f'{os.path.join(self._path, "dataset.json")}: no label for {missing[0]!r} '
                f'({len(missing)} of {len(self._image_fnames)} images unlabelled)')
        labels = np.array([labels[fname] for fname in self._image_fnames])
        if labels.ndim not in (1, 2):
            raise IOError(f'{os.path.join(self._path, "dataset.json")}: labels must be integers or flat lists of numbers')
        return labels.astype({1: np.int64, 2: np.float32}[labels.ndim])

#----------------------------------------------------------------------------
