"""Small general-purpose helpers with the names and meaning of the toolkit's `dnnlib.util`.

`EasyDict`, construction of objects from dotted `class_name` strings, the cache directory, a
stdout/stderr tee (`Logger`), `open_url` for local paths and URLs, and `atomic_write`, the one
way every output file of the project is written (temporary name, then rename). Nothing in this module
downloads unless a URL is passed explicitly, and an offline machine gets a one-line error that
says which local-file flag to use instead.
"""

import contextlib
import hashlib
import importlib
import io
import os
import re
import shutil
import sys
import tempfile
import urllib.parse
import urllib.request

#----------------------------------------------------------------------------

class EasyDict(dict):
    """A dict whose keys can also be read and written as attributes.

    Example:
        >>> c = EasyDict(lr=0.002)
        >>> c.batch = 32
        >>> c['batch'], c.lr
        (32, 0.002)
    """

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name)

#----------------------------------------------------------------------------

class UserError(Exception):
    """An error caused by the user's input (a flag, a file); CLIs print it as one line."""

#----------------------------------------------------------------------------

class Logger(object):
    """Copies everything written to stdout/stderr into a file as well (the run dir's log.txt)."""

    def __init__(self, file_name=None, file_mode='w', should_flush=True):
        self.file = open(file_name, file_mode) if file_name is not None else None
        self.should_flush = should_flush
        self.stdout = sys.stdout
        self.stderr = sys.stderr
        sys.stdout = self
        sys.stderr = self

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.close()

    def write(self, text):
        if isinstance(text, bytes):
            text = text.decode()
        if len(text) == 0:
            return
        if self.file is not None:
            self.file.write(text)
        self.stdout.write(text)
        if self.should_flush:
            self.flush()

    def flush(self):
        if self.file is not None:
            self.file.flush()
        self.stdout.flush()

    def close(self):
        self.flush()
        if sys.stdout is self:
            sys.stdout = self.stdout
        if sys.stderr is self:
            sys.stderr = self.stderr
        if self.file is not None:
            self.file.close()
            self.file = None

#----------------------------------------------------------------------------
# Cache directory.

_dnnlib_cache_dir = None

def set_cache_dir(path):
    global _dnnlib_cache_dir
    _dnnlib_cache_dir = path

def make_cache_dir_path(*paths):
    """Where downloads are cached: set_cache_dir(), $DNNLIB_CACHE_DIR, ~/.cache/dnnlib, or tmp."""
    if _dnnlib_cache_dir is not None:
        return os.path.join(_dnnlib_cache_dir, *paths)
    if 'DNNLIB_CACHE_DIR' in os.environ:
        return os.path.join(os.environ['DNNLIB_CACHE_DIR'], *paths)
    if 'HOME' in os.environ:
        return os.path.join(os.environ['HOME'], '.cache', 'dnnlib', *paths)
    if 'USERPROFILE' in os.environ:
        return os.path.join(os.environ['USERPROFILE'], '.cache', 'dnnlib', *paths)
    return os.path.join(tempfile.gettempdir(), '.cache', 'dnnlib', *paths)

#----------------------------------------------------------------------------

def format_time(seconds):
    """Seconds as a short human string: '42s', '3m 05s', '2h 01m 40s', '1d 03h 00m'."""
    s = int(round(seconds))
    if s < 60:
        return f'{s}s'
    if s < 60 * 60:
        return f'{s // 60}m {s % 60:02d}s'
    if s < 24 * 60 * 60:
        return f'{s // 3600}h {(s // 60) % 60:02d}m {s % 60:02d}s'
    return f'{s // 86400}d {(s // 3600) % 24:02d}h {(s // 60) % 60:02d}m'

#----------------------------------------------------------------------------
# Objects by dotted name.

def get_module_from_obj_name(obj_name):
    """Split 'pkg.mod.Class.attr' into (module, 'Class.attr'), importing the longest module prefix."""
    parts = obj_name.split('.')
    for i in range(len(parts), 0, -1):
        module_name = '.'.join(parts[:i])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            # Only swallow "this prefix is not a module"; a missing dependency inside it is real.
            if err.name is None or not module_name.startswith(err.name):
                raise
            continue
        local = '.'.join(parts[i:])
        get_obj_from_module(module, local)  # raises if the attribute does not exist
        return module, local
    raise ImportError(f'Cannot find a module for "{obj_name}"')

def get_obj_from_module(module, obj_name):
    obj = module
    if obj_name:
        for part in obj_name.split('.'):
            obj = getattr(obj, part)
    return obj

def get_obj_by_name(name):
    module, local = get_module_from_obj_name(name)
    return get_obj_from_module(module, local)

def call_func_by_name(*args, func_name=None, **kwargs):
    """Import the callable named by `func_name` (dotted) and call it with the remaining args."""
    assert func_name is not None
    func = get_obj_by_name(func_name)
    assert callable(func), f'{func_name} is not callable'
    return func(*args, **kwargs)

def construct_class_by_name(*args, class_name=None, **kwargs):
    """Build an object from a config dict: `construct_class_by_name(**EasyDict(class_name='torch.optim.Adam', lr=1e-3), params=...)`."""
    return call_func_by_name(*args, func_name=class_name, **kwargs)

def get_top_level_function_name(obj):
    module = obj.__module__
    if module == '__main__':
        module = os.path.splitext(os.path.basename(sys.modules[module].__file__))[0]
    return module + '.' + obj.__name__

#----------------------------------------------------------------------------
# URLs and files.

def is_url(obj, allow_file_urls=False):
    if not isinstance(obj, str) or '://' not in obj:
        return False
    if allow_file_urls and obj.startswith('file://'):
        return True
    try:
        res = urllib.parse.urlparse(obj)
        if not res.scheme or not res.netloc or '.' not in res.netloc:
            return False
        res = urllib.parse.urlparse(urllib.parse.urljoin(obj, '/'))
        return bool(res.scheme and res.netloc and '.' in res.netloc)
    except ValueError:
        return False

def open_url(url, cache_dir=None, num_attempts=10, verbose=True, return_filename=False, cache=True, flag=None):
    """Open a local path, a file:// URL or an http(s) URL as a binary file object.

    Downloads are cached in `<cache_dir>/downloads/<md5(url)>_<name>`. A URL that cannot be
    fetched (for example on an offline machine) raises `UserError` naming `flag`, the option that
    takes a local file instead.

    Example:
        >>> with open_url('networks/ffhq.pkl') as f:
        ...     data = legacy.load_network_pkl(f)
    """
    assert num_attempts >= 1
    if not re.match('^[a-z]+://', url):
        if not os.path.isfile(url):
            raise UserError(f'{flag + ": " if flag else ""}no such file: {url}')
        return url if return_filename else open(url, 'rb')
    if url.startswith('file://'):
        path = urllib.parse.urlparse(url).path
        if re.match(r'^/[a-zA-Z]:', path):
            path = path[1:]
        return path if return_filename else open(path, 'rb')
    assert is_url(url), f'not a URL: {url}'

    if cache_dir is None:
        cache_dir = make_cache_dir_path('downloads')
    url_md5 = hashlib.md5(url.encode('utf-8')).hexdigest()
    if cache:
        hits = [name for name in (os.listdir(cache_dir) if os.path.isdir(cache_dir) else []) if name.startswith(url_md5 + '_')]
        if len(hits) == 1:
            path = os.path.join(cache_dir, hits[0])
            return path if return_filename else open(path, 'rb')

    data = None
    last_err = None
    for _ in range(num_attempts):
        try:
            with urllib.request.urlopen(url, timeout=30) as res:
                data = res.read()
            break
        except Exception as err:  # network errors come in many types
            last_err = err
    if data is None:
        hint = f'; pass a local file with {flag}' if flag else '; pass a local file path instead'
        raise UserError(f'cannot download {url} ({type(last_err).__name__}: {last_err}){hint}')

    if cache:
        name = re.sub(r'[^0-9a-zA-Z._-]+', '_', os.path.basename(urllib.parse.urlparse(url).path)) or 'download'
        os.makedirs(cache_dir, exist_ok=True)
        final = os.path.join(cache_dir, f'{url_md5}_{name}')
        with atomic_write(final) as f:
            f.write(data)
        if return_filename:
            return final
    assert not return_filename
    return io.BytesIO(data)

#----------------------------------------------------------------------------
# Writing outputs.

def file_sha256(path):
    """Hex sha256 of a file's bytes, read in 1 MiB blocks.

    Example:
        >>> dnnlib.util.file_sha256('network-snapshot-000400.pkl')[:16]
    """
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()

#----------------------------------------------------------------------------

@contextlib.contextmanager
def atomic_write(path, mode='wb', fsync=False, encoding='utf-8'):
    """Write `path` all at once or not at all: to a temporary name beside it, renamed on success.

    Yields an open file (`mode` 'wb' or 'w'; text is written as `encoding`), or, with
    `mode='dir'`, the path of a temporary directory to fill. When the block ends normally the
    temporary is renamed onto `path` with `os.replace` (same folder, so the rename is atomic and an
    existing file is replaced; an existing directory must be empty). When it raises (or is
    interrupted) the temporary is removed and `path` is left as it was. The result gets the
    usual permissions (0666 / 0777 minus the umask). `fsync=True` flushes the data to disk
    before the rename (network snapshots).

    Example:
        >>> with dnnlib.util.atomic_write('out/summary.json', 'w') as f:
        ...     json.dump(summary, f, indent=2)
        >>> with dnnlib.util.atomic_write('out/img.png') as f:
        ...     PIL.Image.fromarray(arr).save(f, format='png')
        >>> with dnnlib.util.atomic_write('dataset_dir', mode='dir') as tmp_dir:
        ...     write_files_into(tmp_dir)
    """
    if mode not in ('wb', 'w', 'dir'):
        raise ValueError(f"atomic_write: mode must be 'wb', 'w' or 'dir', got {mode!r}")
    path = os.path.abspath(os.fspath(path))
    parent, base = os.path.split(path)
    umask = os.umask(0)
    os.umask(umask)
    if mode == 'dir':
        tmp = tempfile.mkdtemp(prefix=f'.{base}.', suffix='.partial', dir=parent)
    else:
        fd, tmp = tempfile.mkstemp(prefix=f'.{base}.', suffix='.partial', dir=parent)
    try:
        if mode == 'dir':
            yield tmp
        else:
            with os.fdopen(fd, mode, **({} if mode == 'wb' else dict(encoding=encoding))) as f:
                yield f
                f.flush()
                if fsync:
                    os.fsync(f.fileno())
        os.chmod(tmp, (0o777 if mode == 'dir' else 0o666) & ~umask)  # mkstemp/mkdtemp create 0600/0700
        if mode == 'dir' and os.path.isdir(path):
            os.rmdir(path)  # must be empty; fails loudly otherwise
        os.replace(tmp, path)
    except BaseException:
        if mode == 'dir':
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)
        raise

#----------------------------------------------------------------------------
