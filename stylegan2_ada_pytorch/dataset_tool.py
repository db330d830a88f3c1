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
import sys
import zipfile

import click
import numpy as np
import PIL.Image
import tqdm

from . import dnnlib
from . import images
from .images import SkipImage

#----------------------------------------------------------------------------

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

def _read_labels(path, source_type):
    """{relative name: label} from the source's dataset.json ({} when there is none)."""
    if source_type == 'dir':
        json_path = os.path.join(path, 'dataset.json')
        if not os.path.isfile(json_path):
            return {}
        with open(json_path, 'rb') as f:
            return _labels_from_json(f.read(), json_path)
    with zipfile.ZipFile(path) as zf:
        if 'dataset.json' not in zf.namelist():
            return {}
        return _labels_from_json(zf.read('dataset.json'), f'{path}:dataset.json')

def _open_image_files_source(path, source_type):
    entries, _ignored = images.list_images(path, flag=f'--source {path}')
    labels = _read_labels(path, source_type)
    def peek_mode(entry): # Header only; a broken file is reported later, when it is converted.
        try:
            with entry.open() as f:
                return PIL.Image.open(f).mode
        except Exception:
            return None
    channels = 3 if any(m is not None and m not in _GRAY_MODES for m in map(peek_mode, entries)) else 1
    items = ((e.relpath, lambda e=e: images.decode(e), labels.get(e.relpath)) for e in entries)
    return dnnlib.EasyDict(num_items=len(entries), channels=channels, entries=items, close=lambda: None)

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
    pixels = read_idx(path, max_items=max_images)
    if pixels.ndim != 3:
        raise dnnlib.UserError(f'{path}: expected images of shape [N, H, W], got {list(pixels.shape)}')
    if pixels.shape[1:] == (28, 28):
        pixels = np.pad(pixels, [(0, 0), (2, 2), (2, 2)], mode='constant') # MNIST: 28x28 -> 32x32
    labels = [None] * len(pixels)
    labels_path = idx_labels_path(path)
    if os.path.isfile(labels_path):
        labels = read_idx(labels_path, max_items=len(pixels))
        if labels.shape != (len(pixels),):
            raise dnnlib.UserError(f'{labels_path}: expected {len(pixels)} labels, got shape {list(labels.shape)}')
        labels = [int(x) for x in labels]
    entries = ((f'{os.path.basename(path)}[{i}]', lambda img=img: img, label)
        for i, (img, label) in enumerate(zip(pixels, labels)))
    return dnnlib.EasyDict(num_items=len(pixels), channels=1, entries=entries, close=lambda: None)

def open_source(plan):
    """Open `plan.source`: EasyDict(num_items, channels, entries, close)."""
    if plan.source_type in ('dir', 'zip'):
        return _open_image_files_source(plan.source, plan.source_type)
    return _open_idx_source(plan.source, plan.max_images)

#----------------------------------------------------------------------------
# Pixels: any PIL mode -> uint8 [H, W, C] with C = the dataset's channel count (images.to_pixels).

to_dataset_pixels = images.to_pixels

#----------------------------------------------------------------------------
# Geometry: the toolkit's --transform / --width / --height.

def transform_image(arr, plan):
    """Apply the plan's crop/resize to uint8 [H, W, C]."""
    resample = _RESIZE_FILTERS[plan.resize_filter]
    h, w = arr.shape[:2]
    if plan.transform is None:
        return images.resize(arr, plan.width or w, plan.height or h, resample)
    if plan.transform == 'center-crop':
        crop = min(h, w)
        arr = arr[(h - crop) // 2 : (h + crop) // 2, (w - crop) // 2 : (w + crop) // 2]
        return images.resize(arr, plan.width, plan.height, resample)
    # center-crop-wide: a central band with aspect width:height, letterboxed in a width x width canvas.
    band_h = min(h, max(1, int(round(w * plan.height / plan.width))))
    band_w = min(w, max(1, int(round(band_h * plan.width / plan.height))))
    arr = arr[(h - band_h) // 2 : (h + band_h) // 2, (w - band_w) // 2 : (w + band_w) // 2]
    arr = images.resize(arr, plan.width, plan.height, resample)
    canvas = np.zeros([plan.width, plan.width, arr.shape[2]], dtype=np.uint8)
    top = (plan.width - plan.height) // 2
    canvas[top : top + plan.height] = arr
    return canvas

#----------------------------------------------------------------------------
# Output written under a temporary name and renamed only when complete.

class DatasetWriter:
    """Adds files to the open zip or the directory that dnnlib.util.atomic_write gave (see convert_dataset)."""

    def __init__(self, target, dest_type):
        self._zip = zipfile.ZipFile(target, 'w', compression=zipfile.ZIP_STORED) if dest_type == 'zip' else None
        self._dir = target if dest_type == 'dir' else None

    def add(self, name, data):
        if self._zip is not None:
            self._zip.writestr(name, data)
            return
        path = os.path.join(self._dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as f:
            f.write(data)

    def close(self):
        if self._zip is not None:
            self._zip.close()

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
    if plan.dest_type == 'dir':
        os.makedirs(os.path.dirname(os.path.abspath(plan.dest)), exist_ok=True)
    try:
        with dnnlib.util.atomic_write(plan.dest, mode='dir' if plan.dest_type == 'dir' else 'wb') as target:
            writer = DatasetWriter(target, plan.dest_type)
            try:
                labels = _write_images(source, plan, state, result, writer, log, progress)
                if result.num_written == 0:
                    raise dnnlib.UserError(f'--source {plan.source}: no image could be converted '
                        f'({len(result.failures)} failed, see messages above)')
                labels = labels if all(label is not None for _, label in labels) else None
                writer.add('dataset.json', json.dumps({'labels': labels}).encode('utf-8'))
            finally:
                writer.close()
    finally:
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
