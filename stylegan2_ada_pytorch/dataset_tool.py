"""`stylegan2-dataset`: turn an image folder, a zip or MNIST idx files into a training dataset.

The output has the layout StyleGAN2-ADA's `training/dataset.py` reads (Karras et al. 2020,
"Training Generative Adversarial Networks with Limited Data", code release): image `i` is stored as
`<i//1000:05d>/img<i:08d>.png` (PNG, compress_level 0) in an uncompressed zip or an empty
directory, with `dataset.json` = `{"labels": [[name, label], ...]}` or `{"labels": null}`.
All images share one square power-of-two size and 1 (grayscale) or 3 (RGB) channels.

Sources: a directory (searched recursively) or a `.zip` of images, with optional `dataset.json`
labels at its root; an MNIST-format idx file (`*-images-idx3-ubyte[.gz]`; labels come from the
matching `*-labels-idx1-ubyte[.gz]` next to it when present; 28x28 images are zero-padded to 32x32
as the toolkit does).

Pixel formats, beyond what the toolkit accepts:
- the dataset is RGB if any source image is in colour, else grayscale; grayscale images in an RGB
  dataset are replicated to three channels;
- images with alpha (RGBA, LA, palette with transparency) are composited over BLACK, i.e. each
  colour value is multiplied by alpha/255 and rounded;
- 16-bit grayscale is scaled to 8 bits (round(v / 257)); palette, CMYK, YCbCr, ... become RGB;
- floating-point images, unreadable/corrupt files and images whose size differs from the dataset
  size (without --width/--height) are reported by name and skipped. The dataset of the other
  images is still written, and the command exits with status 1 and a count.

The output is written under a temporary name beside `--dest` and renamed when complete, so an
error or an interrupt never leaves a half-written dataset. An existing `--dest` zip is replaced;
a `--dest` directory must be empty.

Example:
    stylegan2-dataset --source ~/downloads/train-images-idx3-ubyte.gz --dest ~/datasets/mnist32.zip
    stylegan2-dataset --source ~/photos --dest ~/datasets/photos256.zip --transform center-crop --width 256 --height 256
"""

import gzip
import io
import json
import os
import shutil
import sys
import tempfile
import zipfile

import click
import numpy as np
import PIL.Image
import tqdm

from . import dnnlib

#----------------------------------------------------------------------------

class SkipImage(Exception):
    """A problem with one source image: it is reported by name and left out of the dataset."""

_RESIZE_FILTERS = {'box': PIL.Image.BOX, 'lanczos': PIL.Image.LANCZOS}
_TRANSFORMS = (None, 'center-crop', 'center-crop-wide')
_GRAY_MODES = {'1', 'L', 'LA', 'La', 'I', 'I;16', 'I;16L', 'I;16B', 'I;16N', 'F'}

def _is_power_of_two(n):
    return n >= 1 and (n & (n - 1)) == 0

def _is_idx_path(path):
    name = os.path.basename(path)
    return 'idx3-ubyte' in name and (name.endswith('-ubyte') or name.endswith('-ubyte.gz'))

#----------------------------------------------------------------------------
# The plan: every check that needs no image data, before anything is written.

def make_plan(source, dest, max_images=None, resize_filter='lanczos', transform=None, width=None, height=None):
    """Validate the command-line arguments and describe the conversion (no file is written).

    Raises dnnlib.UserError with a one-line message for any bad argument.

    Example:
        >>> plan = make_plan('train-images-idx3-ubyte.gz', 'mnist.zip', max_images=1000)
        >>> result = convert_dataset(plan)
    """
    plan = dnnlib.EasyDict(source=source, dest=dest, max_images=max_images, resize_filter=resize_filter,
        transform=transform, width=width, height=height)
    plan.source_type = _source_type(source)
    plan.dest_type = _dest_type(dest)
    if max_images is not None and max_images < 1:
        raise dnnlib.UserError(f'--max-images must be at least 1, got {max_images}')
    if resize_filter not in _RESIZE_FILTERS:
        raise dnnlib.UserError(f'--resize-filter must be one of {sorted(_RESIZE_FILTERS)}, got {resize_filter!r}')
    if transform not in _TRANSFORMS:
        raise dnnlib.UserError(f'--transform must be center-crop or center-crop-wide, got {transform!r}')
    for flag, value in (('--width', width), ('--height', height)):
        if value is not None and value < 1:
            raise dnnlib.UserError(f'{flag} must be a positive number of pixels, got {value}')
    plan.out_size = _planned_output_size(transform, width, height)
    return plan

def _source_type(source):
    if os.path.isdir(source):
        return 'dir'
    if not os.path.isfile(source):
        raise dnnlib.UserError(f'--source {source}: no such file or directory')
    if source.lower().endswith('.zip'):
        return 'zip'
    if _is_idx_path(source):
        return 'idx'
    raise dnnlib.UserError(f'--source {source}: unsupported source; expected a directory, a .zip of images, '
        'or an MNIST idx file (*-images-idx3-ubyte or *-images-idx3-ubyte.gz)')

def _dest_type(dest):
    if not dest:
        raise dnnlib.UserError('--dest is required')
    if dest.lower().endswith('.zip'):
        if os.path.isdir(dest):
            raise dnnlib.UserError(f'--dest {dest}: is a directory, not a zip file')
        if not os.path.isdir(os.path.dirname(os.path.abspath(dest))):
            raise dnnlib.UserError(f'--dest {dest}: parent directory does not exist')
        return 'zip'
    if os.path.isfile(dest):
        raise dnnlib.UserError(f'--dest {dest}: exists and is a file; give an empty directory or a .zip path')
    if os.path.isdir(dest) and len(os.listdir(dest)) != 0:
        raise dnnlib.UserError(f'--dest {dest}: destination directory must be empty')
    return 'dir'

def _planned_output_size(transform, width, height):
    """Output (width, height) when the flags fix it, else None (taken from the first image)."""
    if transform is not None and (width is None or height is None):
        raise dnnlib.UserError(f'--transform {transform} needs both --width and --height')
    if transform == 'center-crop-wide':
        if height > width:
            raise dnnlib.UserError(f'--transform center-crop-wide needs --height ({height}) <= --width ({width})')
        size = (width, width)
    elif width is not None and height is not None:
        size = (width, height)
    else:
        return None
    _check_output_size(size, '--width/--height')
    return size

def _check_output_size(size, origin, hint=''):
    w, h = size
    if w != h:
        raise dnnlib.UserError(f'{origin}: images must be square, got {w}x{h}{hint}')
    if not _is_power_of_two(w):
        raise dnnlib.UserError(f'{origin}: image size must be a power of two, got {w}x{h}{hint}')

#----------------------------------------------------------------------------
# Sources. Each yields (name, load, label) with load() -> PIL.Image or uint8 ndarray [H, W].

def _list_images(names):
    PIL.Image.init()
    return sorted(n for n in names if os.path.splitext(n)[1].lower() in PIL.Image.EXTENSION)

def _labels_from_json(data, origin):
    try:
        labels = json.loads(data).get('labels')
    except (ValueError, AttributeError) as e:
        raise dnnlib.UserError(f'{origin}: not a valid dataset.json ({e})')
    if labels is None:
        return {}
    try:
        return {str(name).replace('\\', '/'): label for name, label in labels}
    except (TypeError, ValueError):
        raise dnnlib.UserError(f'{origin}: "labels" must be a list of [file name, label] pairs')

def _open_folder_source(path):
    names = [os.path.relpath(os.path.join(root, f), path).replace(os.sep, '/')
        for root, _dirs, files in os.walk(path) for f in files]
    labels = {}
    if os.path.isfile(os.path.join(path, 'dataset.json')):
        with open(os.path.join(path, 'dataset.json'), 'rb') as f:
            labels = _labels_from_json(f.read(), os.path.join(path, 'dataset.json'))
    opener = lambda name: open(os.path.join(path, name), 'rb')
    return _image_file_source(_list_images(names), opener, labels, close=lambda: None)

def _open_zip_source(path):
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise dnnlib.UserError(f'--source {path}: cannot open zip file ({e})')
    names = zf.namelist()
    labels = _labels_from_json(zf.read('dataset.json'), f'{path}:dataset.json') if 'dataset.json' in names else {}
    return _image_file_source(_list_images(names), zf.open, labels, close=zf.close)

def _image_file_source(names, opener, labels, close):
    def load(name):
        try:
            with opener(name) as f:
                img = PIL.Image.open(io.BytesIO(f.read()))
                img.load()
        except PIL.UnidentifiedImageError:
            raise SkipImage('cannot read image file (not a recognised image format, or corrupt)')
        except (OSError, ValueError, SyntaxError, EOFError, PIL.Image.DecompressionBombError) as e:
            raise SkipImage(f'cannot read image file ({type(e).__name__}: {e})')
        return img
    def peek_mode(name): # Header only; a broken file is reported later, when it is converted.
        try:
            with opener(name) as f:
                return PIL.Image.open(f).mode
        except Exception:
            return None
    channels = 3 if any(m is not None and m not in _GRAY_MODES for m in map(peek_mode, names)) else 1
    entries = ((name, lambda name=name: load(name), labels.get(name)) for name in names)
    return dnnlib.EasyDict(num_items=len(names), channels=channels, entries=entries, close=close)

#----------------------------------------------------------------------------
# MNIST idx files (http://yann.lecun.com/exdb/mnist/ file format).

def _open_maybe_gz(path):
    return gzip.open(path, 'rb') if path.endswith('.gz') else open(path, 'rb')

def read_idx(path, max_items=None):
    """Read an unsigned-byte idx file (optionally gzipped) into a uint8 ndarray [N, ...].

    Only the first `max_items` entries are read when given. Raises dnnlib.UserError naming the file
    when it is not an unsigned-byte idx file or is truncated.
    """
    try:
        with _open_maybe_gz(path) as f:
            header = f.read(4)
            if len(header) != 4 or header[0] != 0 or header[1] != 0:
                raise dnnlib.UserError(f'{path}: not an idx file (bad magic number)')
            if header[2] != 0x08:
                raise dnnlib.UserError(f'{path}: idx data type 0x{header[2]:02x} is not supported (expected unsigned byte, 0x08)')
            dims = np.frombuffer(f.read(4 * header[3]), dtype='>u4').astype(np.int64)
            if dims.size != header[3] or dims.size == 0:
                raise dnnlib.UserError(f'{path}: truncated idx header')
            count = int(dims[0]) if max_items is None else min(int(dims[0]), max_items)
            item_bytes = int(np.prod(dims[1:]))
            data = f.read(count * item_bytes)
    except (OSError, EOFError) as e:
        raise dnnlib.UserError(f'{path}: cannot read idx file ({e})')
    if len(data) != count * item_bytes:
        raise dnnlib.UserError(f'{path}: truncated idx file ({len(data)} of {count * item_bytes} data bytes)')
    return np.frombuffer(data, dtype=np.uint8).reshape([count] + [int(d) for d in dims[1:]])

def idx_labels_path(images_path):
    """The labels file that belongs to an idx images file (`-images-idx3-` -> `-labels-idx1-`)."""
    name = os.path.basename(images_path).replace('images-idx3', 'labels-idx1')
    return os.path.join(os.path.dirname(images_path), name)

def _open_idx_source(path, max_images):
    images = read_idx(path, max_items=max_images)
    if images.ndim != 3:
        raise dnnlib.UserError(f'{path}: expected images of shape [N, H, W], got {list(images.shape)}')
    if images.shape[1:] == (28, 28):
        images = np.pad(images, [(0, 0), (2, 2), (2, 2)], mode='constant') # MNIST: 28x28 -> 32x32
    labels = [None] * len(images)
    labels_path = idx_labels_path(path)
    if os.path.isfile(labels_path):
        labels = read_idx(labels_path, max_items=len(images))
        if labels.shape != (len(images),):
            raise dnnlib.UserError(f'{labels_path}: expected {len(images)} labels, got shape {list(labels.shape)}')
        labels = [int(x) for x in labels]
    entries = ((f'{os.path.basename(path)}[{i}]', lambda img=img: img, label)
        for i, (img, label) in enumerate(zip(images, labels)))
    return dnnlib.EasyDict(num_items=len(images), channels=1, entries=entries, close=lambda: None)

def open_source(plan):
    """Open `plan.source`: EasyDict(num_items, channels, entries, close)."""
    if plan.source_type == 'dir':
        return _open_folder_source(plan.source)
    if plan.source_type == 'zip':
        return _open_zip_source(plan.source)
    return _open_idx_source(plan.source, plan.max_images)

#----------------------------------------------------------------------------
# Pixels: any PIL mode -> uint8 [H, W, C] with C = the dataset's channel count.

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

def to_dataset_pixels(image, channels, notes):
    """Convert a PIL image or an ndarray [H, W(, C)] to uint8 [H, W, channels]."""
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
    raise SkipImage(f'has {arr.shape[2]} channels but the dataset has {channels}')

#----------------------------------------------------------------------------
# Geometry: the toolkit's --transform / --width / --height.

def _resize(arr, width, height, resample):
    if arr.shape[1] == width and arr.shape[0] == height:
        return arr
    img = PIL.Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    out = np.asarray(img.resize((width, height), resample))
    return out.reshape(height, width, arr.shape[2])

def transform_image(arr, plan):
    """Apply the plan's crop/resize to uint8 [H, W, C]."""
    resample = _RESIZE_FILTERS[plan.resize_filter]
    h, w = arr.shape[:2]
    if plan.transform is None:
        return _resize(arr, plan.width or w, plan.height or h, resample)
    if plan.transform == 'center-crop':
        crop = min(h, w)
        arr = arr[(h - crop) // 2 : (h + crop) // 2, (w - crop) // 2 : (w + crop) // 2]
        return _resize(arr, plan.width, plan.height, resample)
    # center-crop-wide: a central band with aspect width:height, letterboxed in a width x width canvas.
    band_h = min(h, max(1, int(round(w * plan.height / plan.width))))
    band_w = min(w, max(1, int(round(band_h * plan.width / plan.height))))
    arr = arr[(h - band_h) // 2 : (h + band_h) // 2, (w - band_w) // 2 : (w + band_w) // 2]
    arr = _resize(arr, plan.width, plan.height, resample)
    canvas = np.zeros([plan.width, plan.width, arr.shape[2]], dtype=np.uint8)
    top = (plan.width - plan.height) // 2
    canvas[top : top + plan.height] = arr
    return canvas

#----------------------------------------------------------------------------
# Output written under a temporary name and renamed only when complete.

class AtomicDatasetWriter:
    """Writes the dataset zip or directory to a temporary path; `commit()` renames it into place."""

    def __init__(self, dest, dest_type):
        self.dest = os.path.abspath(dest)
        self.dest_type = dest_type
        parent, base = os.path.split(self.dest)
        if dest_type == 'zip':
            fd, self.tmp = tempfile.mkstemp(prefix=f'.{base}.', suffix='.partial', dir=parent)
            os.close(fd)
            self._zip = zipfile.ZipFile(self.tmp, 'w', compression=zipfile.ZIP_STORED)
        else:
            os.makedirs(parent, exist_ok=True)
            self.tmp = tempfile.mkdtemp(prefix=f'.{base}.', suffix='.partial', dir=parent)

    def add(self, name, data):
        if self.dest_type == 'zip':
            self._zip.writestr(name, data)
            return
        path = os.path.join(self.tmp, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as f:
            f.write(data)

    def commit(self):
        umask = os.umask(0)
        os.umask(umask)
        if self.dest_type == 'zip':
            self._zip.close()
            os.chmod(self.tmp, 0o666 & ~umask) # mkstemp creates 0600; give the usual permissions
            os.replace(self.tmp, self.dest)
        else:
            if os.path.isdir(self.dest):
                os.rmdir(self.dest) # empty (checked by the plan); fails loudly if something appeared
            os.chmod(self.tmp, 0o777 & ~umask) # mkdtemp creates 0700
            os.replace(self.tmp, self.dest)
        self.tmp = None

    def abort(self):
        if self.tmp is None:
            return
        if self.dest_type == 'zip':
            self._zip.close()
            os.remove(self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp = None

def encode_png(arr):
    img = PIL.Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    buf = io.BytesIO()
    img.save(buf, format='png', compress_level=0, optimize=False)
    return buf.getvalue()

#----------------------------------------------------------------------------

def _convert_one(load, plan, state, notes):
    """Load, convert and resize one image; fixes the dataset size from the first image."""
    arr = transform_image(to_dataset_pixels(load(), state.channels, notes), plan)
    size = (arr.shape[1], arr.shape[0])
    if state.size is None:
        _check_output_size(size, f'{state.current} (the first image)', ' (use --width/--height, and --transform center-crop for non-square images)')
        state.size = size
        state.size_origin = state.current
    elif size != state.size:
        raise SkipImage(f'is {size[0]}x{size[1]} but the dataset is {state.size[0]}x{state.size[1]} '
            f'(set by {state.size_origin}); use --width/--height to resize all images')
    return arr

def convert_dataset(plan, log=None, progress=False):
    """Run a plan from make_plan(). Returns EasyDict(dest, num_written, failures, notes, channels, size).

    `failures` is a list of (name, reason) for skipped images, `notes` maps each kind of pixel
    conversion made to the names it was applied to. Raises dnnlib.UserError (and writes nothing)
    when no image could be converted or the first image has an unusable size.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    source = open_source(plan)
    state = dnnlib.EasyDict(channels=source.channels, size=plan.out_size, size_origin='--width/--height', current=None)
    result = dnnlib.EasyDict(dest=plan.dest, num_written=0, failures=[], notes={}, channels=source.channels)
    writer = AtomicDatasetWriter(plan.dest, plan.dest_type)
    try:
        labels = _write_images(source, plan, state, result, writer, log, progress)
        if result.num_written == 0:
            raise dnnlib.UserError(f'--source {plan.source}: no image could be converted '
                f'({len(result.failures)} failed, see messages above)')
        labels = labels if all(label is not None for _, label in labels) else None
        writer.add('dataset.json', json.dumps({'labels': labels}).encode('utf-8'))
        writer.commit()
    finally:
        writer.abort()
        source.close()
    result.size = state.size
    return result

def _write_images(source, plan, state, result, writer, log, progress):
    labels = []
    total = source.num_items if plan.max_images is None else min(plan.max_images, source.num_items)
    bar = tqdm.tqdm(total=total, unit='img', disable=(None if progress else True), file=sys.stderr) # None: only on a TTY
    with bar:
        for name, load, label in source.entries:
            if plan.max_images is not None and result.num_written >= plan.max_images:
                break
            state.current = name
            notes = set()
            try:
                arr = _convert_one(load, plan, state, notes)
            except SkipImage as e:
                result.failures.append((name, str(e)))
                log(f'skipped {name}: {e}')
                bar.update(1)
                continue
            for note in notes:
                result.notes.setdefault(note, []).append(name)
            idx = result.num_written
            out_name = f'{idx // 1000:05d}/img{idx:08d}.png'
            writer.add(out_name, encode_png(arr))
            labels.append([out_name, label])
            result.num_written += 1
            bar.update(1)
    return labels

#----------------------------------------------------------------------------

def summarize(result, max_names=3):
    """One line per kind of conversion made, naming the first few files."""
    lines = []
    for note, names in sorted(result.notes.items()):
        more = f' and {len(names) - max_names} more' if len(names) > max_names else ''
        lines.append(f'note: {note}: {len(names)} image(s): {", ".join(names[:max_names])}{more}')
    return lines

@click.command()
@click.option('--source', help='Directory, .zip, or MNIST *-images-idx3-ubyte[.gz] file', required=True, metavar='PATH')
@click.option('--dest', help='Output .zip or empty directory', required=True, metavar='PATH')
@click.option('--max-images', help='Stop after this many images', type=int, default=None)
@click.option('--resize-filter', help='Resampling filter', type=click.Choice(['box', 'lanczos']), default='lanczos', show_default=True)
@click.option('--transform', help='Crop before resizing', type=click.Choice(['center-crop', 'center-crop-wide']))
@click.option('--width', help='Output width', type=int)
@click.option('--height', help='Output height', type=int)
def main(source, dest, max_images, resize_filter, transform, width, height):
    """Convert images into a StyleGAN2-ADA training dataset (zip or directory)."""
    try:
        plan = make_plan(source, dest, max_images=max_images, resize_filter=resize_filter,
            transform=transform, width=width, height=height)
        result = convert_dataset(plan, log=lambda msg: tqdm.tqdm.write(msg, file=sys.stderr), progress=True)
    except dnnlib.UserError as e:
        raise click.ClickException(str(e))
    for line in summarize(result):
        click.echo(line, err=True)
    w, h = result.size
    click.echo(f'Wrote {result.num_written} images ({w}x{h}, {result.channels} channel(s)) to {dest}')
    if result.failures:
        raise click.ClickException(f'{len(result.failures)} image(s) could not be converted and were skipped '
            f'(listed above); the dataset was written without them')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main() # pylint: disable=no-value-for-parameter

#----------------------------------------------------------------------------
