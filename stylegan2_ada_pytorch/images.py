"""Image files in and out: the one module that lists, decodes, converts and writes images.

Used by the dataset tool (`stylegan2-dataset`), the training datasets, `stylegan2-generate`, the
snapshot grids and plugins that read user photos (e.g. `gradstyle-edit`), so every command treats a
file the same way.

    >>> from stylegan2_ada_pytorch import images
    >>> entries, ignored = images.list_images('photos.zip')          # folder, zip or one file
    >>> arr, notes = images.read_image(entries[0], resolution=256, channels=G.img_channels)
    >>> arr.shape, notes                                              # uint8 [256, 256, C]
    ((256, 256, 3), ['center-crop 640x480 -> 480x480', 'resize 480x480 -> 256x256 (Lanczos)'])
    >>> images.save_image('out/rec.png', images.to_uint8(img)[0])   # written atomically

Pixel conversions (`to_pixels`), the same for every command:
- alpha (RGBA, LA, palette with transparency) is composited over black: colour * alpha / 255, rounded;
- 16-bit grayscale is scaled to 8 bits: round(v / 257); palette, CMYK, YCbCr, ... become RGB;
- the result has the channel count asked for: grayscale is copied to 3 channels for an RGB
  network, colour is converted to luma (PIL's 'L', ITU-R 601-2) for a 1-channel network;
- floating-point images and files PIL cannot read raise `SkipImage` with the reason.
"""

import dataclasses
import io
import os
import zipfile
from typing import Callable

import numpy as np
import PIL.Image
import PIL.ImageOps
import torch

from . import dnnlib

try:
    import pyspng
except ImportError:
    pyspng = None

__all__ = ['SkipImage', 'ImageEntry', 'ZipReader', 'image_extensions', 'image_names', 'list_images', 'decode', 'decode_raw',
    'to_pixels', 'resize', 'read_image', 'to_uint8', 'save_image']

#----------------------------------------------------------------------------

class SkipImage(Exception):
    """A problem with one image file: report it by name and go on with the others."""

@dataclasses.dataclass
class ImageEntry:
    """One image: `name` for messages, `relpath` inside its folder/zip, `stem` for output names, `open()` -> binary file."""
    name:       str
    relpath:    str
    stem:       str
    open:       Callable

def image_extensions():
    """Lower-case file extensions PIL can read ('.png', '.jpg', ...)."""
    PIL.Image.init()
    return set(PIL.Image.EXTENSION)

def image_names(names):
    """The names that have an image extension, sorted."""
    exts = image_extensions()
    return sorted(n for n in names if os.path.splitext(n)[1].lower() in exts)

#----------------------------------------------------------------------------
# Listing.

def _unique_stems(names):
    # File name without extension; repeated stems (a/x.png, b/x.png) get -2, -3, ...
    stems, seen = [], {}
    for name in names:
        stem = os.path.splitext(os.path.basename(name))[0] or 'image'
        seen[stem] = seen.get(stem, 0) + 1
        stems.append(stem if seen[stem] == 1 else f'{stem}-{seen[stem]}')
    return stems

def _entries(names, opener, prefix=''):
    return [ImageEntry(name=prefix + n, relpath=n, stem=s, open=lambda n=n: opener(n)) for n, s in zip(names, _unique_stems(names))]

class ZipReader:
    """A zip file opened lazily and once per process: a forked child (a DataLoader worker) opens its own.

    Processes must not share a ZipFile: a forked worker inherits the parent's file offset, and
    parent and worker reading at once corrupt each other's reads ("Bad magic number for file
    header"). `get()` reopens the file whenever the process id differs from the opener's; pickling
    (spawned workers) drops the handle.

    Example:
        >>> reader = ZipReader('data.zip')
        >>> data = reader.get().read('00000/img00000000.png')
    """

    def __init__(self, path):
        self.path = path
        self._zipfile = None
        self._pid = None

    def get(self):
        if self._zipfile is None or self._pid != os.getpid():
            self._zipfile = None    # another process's handle: drop it, never use or close it
            self._zipfile = zipfile.ZipFile(self.path)
            self._pid = os.getpid()
        return self._zipfile

    def close(self):
        zf, self._zipfile = self._zipfile, None
        if zf is not None and self._pid == os.getpid():
            zf.close()

    def __getstate__(self):
        return dict(self.__dict__, _zipfile=None, _pid=None)

_zip_readers = {}   # (path, mtime, size) -> ZipReader, for list_images() entries

def _zip_member(path, name):
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_mtime_ns, st.st_size)
    if key not in _zip_readers:
        _zip_readers[key] = ZipReader(path)
    return io.BytesIO(_zip_readers[key].get().read(name))

def list_images(source, flag='--input'):
    """(entries, ignored): the images of a file, a folder (recursive) or a zip, in sorted order.

    Folder and zip members are picked by extension (PIL's list); `ignored` names the other files
    (hidden files in folders are left out silently). A single file is always tried. Raises
    dnnlib.UserError naming `flag` for a missing source or a bad zip.

    Example:
        >>> entries, ignored = list_images('photos.zip')
        >>> entries[0].name, entries[0].relpath, entries[0].stem
        ('photos.zip:a/me.jpg', 'a/me.jpg', 'me')
    """
    source = os.fspath(source)
    if os.path.isdir(source):
        names = sorted(os.path.relpath(os.path.join(root, f), source).replace(os.sep, '/')
            for root, _dirs, files in os.walk(source) for f in files if not f.startswith('.'))
        keep = image_names(names)
        return _entries(keep, lambda n: open(os.path.join(source, n), 'rb')), [n for n in names if n not in set(keep)]
    if not os.path.isfile(source):
        raise dnnlib.UserError(f'{flag}: no such file or folder: {source}')
    if source.lower().endswith('.zip'):
        try:
            with zipfile.ZipFile(source) as zf:
                names = sorted(n for n in zf.namelist() if not n.endswith('/'))
        except (zipfile.BadZipFile, OSError) as err:
            raise dnnlib.UserError(f'{flag}: {source}: cannot open zip file ({err})')
        keep = image_names(names)
        return _entries(keep, lambda n: _zip_member(source, n), prefix=f'{os.path.basename(source)}:'), \
            [n for n in names if n not in set(keep)]
    return _entries([os.path.basename(source)], lambda _n: open(source, 'rb')), []

#----------------------------------------------------------------------------
# Decoding.

def _as_entry(entry):
    if isinstance(entry, ImageEntry):
        return entry
    path = os.fspath(entry)
    return ImageEntry(name=path, relpath=os.path.basename(path), stem=os.path.splitext(os.path.basename(path))[0],
        open=lambda: open(path, 'rb'))

def decode(entry):
    """A loaded PIL image from an ImageEntry or a path; SkipImage with the reason when unreadable."""
    entry = _as_entry(entry)
    try:
        with entry.open() as f:
            img = PIL.Image.open(io.BytesIO(f.read()))
            img.load()
    except PIL.UnidentifiedImageError:
        raise SkipImage('cannot read image file (not a recognised image format, or corrupt)')
    except (OSError, ValueError, SyntaxError, EOFError, PIL.Image.DecompressionBombError) as err:
        raise SkipImage(f'cannot read image file ({type(err).__name__}: {err})')
    return img

def decode_raw(f, name):
    """The pixels of an open binary file exactly as stored: ndarray [H, W] or [H, W, C].

    PNGs go through pyspng when it is installed (faster), everything else through PIL; training
    datasets use this and then insist on 8-bit grayscale or RGB. Raises OSError/ValueError.
    """
    if pyspng is not None and os.path.splitext(name)[1].lower() == '.png':
        return pyspng.load(f.read())
    return np.array(PIL.Image.open(f))

#----------------------------------------------------------------------------
# Pixels: any PIL mode -> uint8 [H, W, C].

def _composite_over_black(color, alpha):
    return ((color.astype(np.uint32) * alpha[..., np.newaxis] + 127) // 255).astype(np.uint8)

def _pil_to_array(img, notes):
    """uint8 [H, W, 1 or 3]; records the conversions it made in `notes` (a set of strings)."""
    mode = img.mode
    if mode == 'P':
        notes.add('palette expanded to RGB')
        img = img.convert('RGBA' if 'transparency' in img.info else 'RGB')
    elif mode == 'PA':
        img = img.convert('RGBA')
    elif mode in ('1', 'L', 'RGB'):
        img = img.convert('L' if mode == '1' else mode)
    elif mode.startswith('I'):
        arr = np.asarray(img).astype(np.int64)
        if arr.ndim != 2 or arr.min() < 0 or arr.max() > 65535:
            raise SkipImage(f'unsupported integer image (mode {mode}, values {arr.min()}..{arr.max()}); expected 8 or 16 bits')
        notes.add('16-bit scaled to 8-bit')
        return np.round(arr / 257.0).astype(np.uint8)[..., np.newaxis]
    elif mode == 'F':
        raise SkipImage('floating-point images (PIL mode F) are not supported; save it as 8-bit PNG/JPEG')
    elif mode not in ('RGBA', 'RGBa', 'LA', 'La'):
        notes.add(f'{mode} converted to RGB')
        img = img.convert('RGB')
    arr = np.asarray(img)
    if arr.ndim == 2:
        return arr[..., np.newaxis]
    if arr.shape[2] in (2, 4): # LA / RGBA
        notes.add('alpha composited over black')
        premultiplied = img.mode in ('RGBa', 'La')
        return arr[..., :-1].copy() if premultiplied else _composite_over_black(arr[..., :-1], arr[..., -1])
    return arr

def to_pixels(image, channels, notes):
    """A PIL image or an ndarray [H, W(, C)] -> uint8 [H, W, channels] (1 or 3); conversions go into the set `notes`."""
    arr = _pil_to_array(image, notes) if isinstance(image, PIL.Image.Image) else np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., np.newaxis]
    if arr.dtype != np.uint8:
        raise SkipImage(f'unsupported pixel type {arr.dtype}')
    if arr.shape[2] == channels:
        return arr
    if arr.shape[2] == 1 and channels == 3:
        notes.add('grayscale replicated to RGB')
        return np.repeat(arr, 3, axis=2)
    if arr.shape[2] == 3 and channels == 1:
        notes.add('RGB converted to grayscale')
        return np.asarray(PIL.Image.fromarray(arr, 'RGB').convert('L'))[..., np.newaxis]
    raise SkipImage(f'has {arr.shape[2]} channels but {channels} are needed')

def resize(arr, width, height, resample=PIL.Image.LANCZOS):
    """uint8 [H, W, C] resized to [height, width, C] with a PIL filter (unchanged when the size matches)."""
    if arr.shape[1] == width and arr.shape[0] == height:
        return arr
    img = PIL.Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    out = np.asarray(img.resize((width, height), resample))
    return out.reshape(height, width, arr.shape[2])

def read_image(entry, resolution=None, channels=3):
    """(uint8 [R, R, channels], notes): decode, orient, convert, center-crop and resize (Lanczos) one image.

    `entry` is an ImageEntry, a path or a PIL image. `channels` is the network's channel count
    (`G.img_channels`: 1 gives grayscale, 3 RGB); conversions follow the module docstring. The
    largest centred square is cropped and resized to `resolution` (None: keep the size, no crop).
    `notes` lists what was changed (empty when nothing was). Raises SkipImage with the reason for
    an unreadable or unsupported file.

    Example:
        >>> arr, notes = read_image('me.jpg', 32, channels=1)      # a grayscale 32x32 network
        >>> arr.shape, notes
        ((32, 32, 1), ['mode RGB: RGB converted to grayscale', 'center-crop ...', 'resize ...'])
    """
    img = entry if isinstance(entry, PIL.Image.Image) else decode(entry)
    notes = []
    if getattr(img, 'n_frames', 1) > 1:
        notes.append(f'first of {img.n_frames} frames')
    if img.getexif().get(0x0112, 1) not in (1, None):                         # EXIF orientation tag.
        img = PIL.ImageOps.exif_transpose(img)
        notes.append('rotated by EXIF orientation')
    mode_notes = set()
    arr = to_pixels(img, channels, mode_notes)
    notes += [f'mode {img.mode}: {", ".join(sorted(mode_notes))}'] if mode_notes else []
    if resolution is None:
        return np.ascontiguousarray(arr), notes
    h, w = arr.shape[:2]
    crop = min(h, w)
    if h != w:
        notes.append(f'center-crop {w}x{h} -> {crop}x{crop}')
        arr = arr[(h - crop) // 2 : (h + crop) // 2, (w - crop) // 2 : (w + crop) // 2]
    if crop != resolution:
        notes.append(f'resize {crop}x{crop} -> {resolution}x{resolution} (Lanczos)')
    arr = resize(arr, resolution, resolution, PIL.Image.LANCZOS)
    return np.ascontiguousarray(arr), notes

#----------------------------------------------------------------------------
# Writing.

def to_uint8(img):
    """[N, C, H, W] tensor in about [-1, 1] -> [N, H, W, C] uint8, as the toolkit converts images."""
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)

def save_image(path, arr, format=None):
    """Write one uint8 image [H, W], [H, W, 1] (grayscale) or [H, W, 3] (RGB) atomically; PNG unless `format` says otherwise.

    Accepts an ndarray or a CPU/GPU tensor.
    """
    if isinstance(arr, torch.Tensor):
        arr = arr.detach().cpu().numpy()
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f'save_image: expected uint8 [H, W], [H, W, 1] or [H, W, 3], got {arr.dtype} {list(arr.shape)}')
    img = PIL.Image.fromarray(arr, 'L' if arr.ndim == 2 else 'RGB')
    with dnnlib.util.atomic_write(path) as f:
        img.save(f, format=format or 'png')

#----------------------------------------------------------------------------
