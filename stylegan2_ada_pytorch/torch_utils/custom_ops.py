"""Just-in-time build of the toolkit's C++/CUDA plugins (`bias_act_plugin`, `upfirdn2d_plugin`).

`get_plugin` compiles the sources with `torch.utils.cpp_extension.load` (ninja) on first use and
imports the result. Compared with the 2021 toolkit it fixes the three most reported problems:

- a failed build is reported ONCE per process, as a one-line warning naming the plugin and the
  build log, and the plugin is remembered as failed (no rebuild attempt on every call); callers
  that pass `fallback=True` get None and use their pure-PyTorch reference path;
- the build directory is named by the md5 of the sources, so edited sources rebuild and unchanged
  ones are reused;
- builds of one directory are serialised with an OS-level lock (released by the kernel when its
  holder dies, so an interrupted build cannot leave a lock that blocks forever), waiting at most
  `lock_timeout` seconds; the `lock` file older PyTorch versions leave behind is removed.

Environment: `TORCH_EXTENSIONS_DIR` overrides the build root (default
`~/.cache/torch_extensions`, via PyTorch); `TORCH_CUDA_ARCH_LIST` selects GPU architectures.
"""

import contextlib
import glob
import hashlib
import importlib
import os
import shutil
import sys
import time
import traceback
import warnings

import torch

#----------------------------------------------------------------------------

verbosity = 'brief'     # Verbosity level: 'none', 'brief' (one line per build), 'full' (compiler output).
lock_timeout = 600      # Seconds to wait for another process building the same plugin before giving up.

_cached_plugins = dict()    # module_name -> imported module
_failed_plugins = dict()    # module_name -> path of the build log (or a short reason)

#----------------------------------------------------------------------------

def get_plugin(module_name, sources, headers=None, source_dir=None, fallback=False, **build_kwargs):
    """Compile (on first use) and import a C++/CUDA extension; cached per process.

    `sources`/`headers` are file names, relative to `source_dir` if given. `build_kwargs` go to
    `torch.utils.cpp_extension.load` (e.g. `extra_cuda_cflags`). On failure: raise RuntimeError,
    or with `fallback=True` warn once and return None; later calls return the cached result
    without rebuilding.

    Example:
        >>> plugin = custom_ops.get_plugin('bias_act_plugin', ['bias_act.cpp', 'bias_act.cu'],
        ...     headers=['bias_act.h'], source_dir=os.path.dirname(__file__), fallback=True)
        >>> if plugin is None: ...  # use the reference implementation
    """
    assert verbosity in ['none', 'brief', 'full'], f'custom_ops.verbosity must be none/brief/full, got {verbosity!r}'
    if module_name in _cached_plugins:
        return _cached_plugins[module_name]
    if module_name in _failed_plugins:
        if fallback:
            return None
        raise RuntimeError(f'PyTorch plugin "{module_name}" failed to build earlier in this process; see {_failed_plugins[module_name]}')

    if verbosity == 'full':
        print(f'Setting up PyTorch plugin "{module_name}"...')
    elif verbosity == 'brief':
        print(f'Setting up PyTorch plugin "{module_name}"... ', end='', flush=True)
    try:
        module = _build_and_import(module_name, sources, headers, source_dir, build_kwargs)
    except Exception as exc:
        log = _write_failure_log(module_name, exc)
        _failed_plugins[module_name] = log
        if verbosity == 'brief':
            print('Failed!')
        message = f'PyTorch plugin "{module_name}" failed to build ({type(exc).__name__})'
        if not fallback:
            raise RuntimeError(f'{message}. Build log: {log}') from exc
        warnings.warn(f'{message}; using the slower reference implementation. Build log: {log}', RuntimeWarning, stacklevel=2)
        return None
    if verbosity == 'full':
        print(f'Done setting up PyTorch plugin "{module_name}".')
    elif verbosity == 'brief':
        print('Done.')
    _cached_plugins[module_name] = module
    return module

#----------------------------------------------------------------------------

def _build_and_import(module_name, sources, headers, source_dir, build_kwargs):
    if source_dir is not None:
        sources = [os.path.join(source_dir, name) for name in sources]
        headers = [os.path.join(source_dir, name) for name in (headers or [])]
    headers = list(headers or [])
    for path in sources + headers:
        if not os.path.isfile(path):
            raise FileNotFoundError(f'custom_ops: source file not found: {path}')
    _check_compiler()
    with_cuda = any(path.endswith('.cu') for path in sources)
    if with_cuda and not os.environ.get('TORCH_CUDA_ARCH_LIST') and not torch.cuda.is_available():
        raise RuntimeError('custom_ops: no CUDA device to detect the GPU architecture from; set TORCH_CUDA_ARCH_LIST (e.g. "8.0;8.6")')
    cpp_extension = _cpp_extension(with_cuda)

    # Copy the sources into <root>/<module_name>/<md5>/ and build there: edits give a new digest.
    digest = _source_digest(sources + headers)
    build_dir = os.path.join(_extensions_root(), module_name, digest)
    os.makedirs(build_dir, exist_ok=True)
    with _build_lock(build_dir):
        _remove_leftover_lock(build_dir)
        for path in sources + headers:
            dst = os.path.join(build_dir, os.path.basename(path))
            if not os.path.isfile(dst) or _file_md5(dst) != _file_md5(path):
                shutil.copyfile(path, dst)
        build_sources = [os.path.join(build_dir, os.path.basename(path)) for path in sources]
        module = cpp_extension.load(name=module_name, sources=build_sources, build_directory=build_dir,
            verbose=(verbosity == 'full'), **build_kwargs)
    return module if module is not None else importlib.import_module(module_name)

def _cpp_extension(with_cuda):
    """Import torch.utils.cpp_extension lazily, pointing CUDA_HOME at a real toolkit first.

    PyTorch guesses CUDA_HOME as the parent of the directory holding `nvcc`, which is wrong when
    `nvcc` on PATH is a wrapper script (e.g. /usr/local/bin/nvcc); we look for a directory that
    actually contains include/cuda_runtime.h.
    """
    if with_cuda and not (os.environ.get('CUDA_HOME') or os.environ.get('CUDA_PATH')):
        home = _find_cuda_home()
        if home is not None:
            os.environ['CUDA_HOME'] = home
            module = sys.modules.get('torch.utils.cpp_extension')
            if module is not None and not _is_cuda_home(getattr(module, 'CUDA_HOME', None)):
                module.CUDA_HOME = home     # Already imported with a wrong guess.
    import torch.utils.cpp_extension
    return torch.utils.cpp_extension

def _is_cuda_home(path):
    return bool(path) and os.path.isfile(os.path.join(path, 'include', 'cuda_runtime.h'))

def _find_cuda_home():
    candidates = []
    nvcc = shutil.which('nvcc')
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates += ['/usr/local/cuda'] + sorted(glob.glob('/usr/local/cuda-*'), reverse=True)
    return next((path for path in candidates if _is_cuda_home(path)), None)

def _extensions_root():
    root = os.environ.get('TORCH_EXTENSIONS_DIR')
    if not root:
        import torch.utils.cpp_extension
        root = torch.utils.cpp_extension._get_build_directory('custom_ops', verbose=False)
        root = os.path.dirname(root)
    return root

def _file_md5(path):
    with open(path, 'rb') as f:
        return hashlib.md5(f.read()).hexdigest()

def _source_digest(paths):
    md5 = hashlib.md5()
    for path in paths:
        md5.update(os.path.basename(path).encode('utf-8') + b'\0')
        with open(path, 'rb') as f:
            md5.update(f.read())
    md5.update(torch.__version__.encode('utf-8'))
    md5.update(_target_tag().encode('utf-8'))
    return md5.hexdigest()

def _target_tag():
    """What the CUDA code is compiled for: TORCH_CUDA_ARCH_LIST if set, else the GPU's name."""
    arch_list = os.environ.get('TORCH_CUDA_ARCH_LIST')
    if arch_list:
        return 'arch:' + arch_list
    if torch.cuda.is_available():
        return 'gpu:' + torch.cuda.get_device_name()
    return 'cpu'

#----------------------------------------------------------------------------

def _check_compiler():
    """On Windows, put the newest Visual Studio cl.exe on PATH if none is there."""
    if os.name != 'nt' or shutil.which('cl.exe'):
        return
    patterns = [
        'C:/Program Files*/Microsoft Visual Studio/*/*/VC/Tools/MSVC/*/bin/Hostx64/x64',
        'C:/Program Files*/Microsoft Visual Studio */vc/bin',
    ]
    matches = sorted(m for pattern in patterns for m in glob.glob(pattern))
    if not matches:
        raise RuntimeError('Could not find MSVC/GCC/CLANG installation on this computer. Check _check_compiler() in custom_ops.py.')
    os.environ['PATH'] += ';' + matches[-1]

#----------------------------------------------------------------------------

@contextlib.contextmanager
def _build_lock(build_dir):
    """Exclusive OS-level lock of a build directory, released by the kernel if the holder dies.

    Raises TimeoutError after `lock_timeout` seconds instead of waiting forever. (Windows: no
    lock; `_remove_leftover_lock` then relies on the age of the leftover file.)
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(os.path.join(build_dir, 'build.lock'), 'a+') as f:
        start = time.time()
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.time() - start > lock_timeout:
                    raise TimeoutError(f'custom_ops: another process has held the build lock {f.name} for more than {lock_timeout} s')
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)

def _remove_leftover_lock(build_dir):
    """Delete the `lock` file an interrupted build of older PyTorch versions leaves behind.

    Those versions wait for as long as the file exists. We only get here while holding
    `_build_lock`, so no builder of ours owns it; without fcntl (Windows) only files older than
    `lock_timeout` seconds are removed.
    """
    lock = os.path.join(build_dir, 'lock')
    if not os.path.exists(lock):
        return
    try:
        import fcntl  # noqa: F401
    except ImportError:
        if time.time() - os.path.getmtime(lock) < lock_timeout:
            return
    try:
        os.remove(lock)
        if verbosity == 'full':
            print(f'custom_ops: removed leftover build lock {lock}')
    except OSError:
        pass

#----------------------------------------------------------------------------

def _write_failure_log(module_name, exc):
    """Write the traceback (which includes the compiler output) next to the build; return its path."""
    text = ''.join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        log_dir = os.path.join(_extensions_root(), module_name)
        os.makedirs(log_dir, exist_ok=True)
        path = os.path.join(log_dir, 'build_failure.log')
        with open(path, 'w') as f:
            f.write(text)
        return path
    except OSError:
        sys.stderr.write(text)
        return '<stderr>'

#----------------------------------------------------------------------------
