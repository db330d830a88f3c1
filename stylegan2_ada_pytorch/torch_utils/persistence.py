"""Persistent classes: modules that pickle with their constructor arguments, in the toolkit's format.

A class decorated with `@persistent_class` records deep copies of the positional and keyword
arguments it was built with (`obj.init_args`, `obj.init_kwargs`) and pickles as a call to
`torch_utils.persistence._reconstruct_persistent_obj(meta)`, where `meta` holds the format version
(6), the full source text of the defining module, the class name and the object's `__dict__`.
That is the layout of every network pickle the StyleGAN2-ADA-PyTorch toolkit ever wrote, so the
pickles written here (through `dump`/`dumps`) load in NVIDIA's code, and theirs load here.

What this module never does: execute the module source stored in a pickle. Reading foreign
pickles is the job of `stylegan2_ada_pytorch.legacy.load_network_pkl`, which maps the recorded
class names onto this package's classes through an allow-list. The `_reconstruct_persistent_obj`
defined here only rebuilds objects whose recorded source belongs to a module of this process
(what `copy.deepcopy` and a round trip inside one installation need).

The source stored for a module is its own text with the package-internal imports spelled the
toolkit's way (`from torch_utils import misc`, `import dnnlib`), so NVIDIA's loader can execute it
with its own `torch_utils` and `dnnlib` and wrap the classes with its own decorator.
"""

import copy
import hashlib
import importlib.util
import inspect
import io
import pickle
import re
import sys
import types

import numpy as np
import torch

from .. import dnnlib

#----------------------------------------------------------------------------

_version = 6                # Format version written into every `meta`; NVIDIA's loader requires 6.
_decorators = set()         # Decorator classes created by persistent_class().
_import_hooks = []          # Functions meta -> meta applied while rebuilding an object.
_module_to_src_dict = {}    # Module object -> source text stored in pickles.
_src_to_module_dict = {}    # Source text -> module object (the reverse lookup, used to rebuild).

_NV_RECONSTRUCT = ('torch_utils.persistence', '_reconstruct_persistent_obj')
_NV_EASYDICT = ('dnnlib.util', 'EasyDict')
_PACKAGE = __name__.rsplit('.', 2)[0]  # 'stylegan2_ada_pytorch'

class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for something outside the allow-list (a global, a class, a module source)."""

#----------------------------------------------------------------------------

def persistent_class(orig_class):
    """Class decorator: instances remember their init args and pickle in the toolkit's format.

    Example:
        >>> from stylegan2_ada_pytorch.torch_utils import persistence
        >>> @persistence.persistent_class
        ... class MyInjector(torch.nn.Module):
        ...     def __init__(self, channels, gain=1.0):
        ...         super().__init__()
        ...         self.conv = torch.nn.Conv2d(channels, channels, 1)
        >>> m = MyInjector(64, gain=0.5)
        >>> m.init_args, dict(m.init_kwargs)
        ((64,), {'gain': 0.5})
        >>> m2 = type(m)(*m.init_args, **m.init_kwargs)   # rebuild, then copy the weights

    Rules that keep a class loadable: define it at the top level of its module, pass only plain
    data to its constructor (numbers, strings, lists, dicts/EasyDicts, tensors, other persistent
    objects), keep the helpers it needs in the same module, and import the toolkit through
    `torch_utils`/`dnnlib` names (relative or `stylegan2_ada_pytorch.` imports are rewritten).
    """
    assert isinstance(orig_class, type)
    if is_persistent(orig_class):
        return orig_class

    assert orig_class.__module__ in sys.modules
    orig_module = sys.modules[orig_class.__module__]
    orig_module_src = _module_to_src(orig_module)

    class Decorator(orig_class):
        _orig_module_src = orig_module_src
        _orig_class_name = orig_class.__name__

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._init_args = copy.deepcopy(args)
            self._init_kwargs = copy.deepcopy(kwargs)
            assert orig_class.__name__ in orig_module.__dict__, \
                f'{orig_class.__name__} must be defined at the top level of {orig_module.__name__}'
            _check_plain_data((self._init_args, self._init_kwargs), f'{orig_class.__name__} init args')

        @property
        def init_args(self):
            return copy.deepcopy(self._init_args)

        @property
        def init_kwargs(self):
            return dnnlib.EasyDict(copy.deepcopy(self._init_kwargs))

        def __reduce__(self):
            fields = list(super().__reduce__())
            fields += [None] * max(3 - len(fields), 0)
            # Step aside when another persistence implementation (e.g. NVIDIA's loader, which
            # wraps the classes it finds in our stored source) subclassed us: it expects a plain
            # (reconstructor, args, state) tuple from its parent.
            if type(self) not in _decorators:
                return tuple(fields)
            if fields[0] is not _reconstruct_persistent_obj:
                meta = dict(type='class', version=_version, module_src=self._orig_module_src,
                    class_name=self._orig_class_name, state=fields[2])
                fields[0] = _reconstruct_persistent_obj
                fields[1] = (meta,)
                fields[2] = None
            return tuple(fields)

    Decorator.__name__ = orig_class.__name__
    Decorator.__qualname__ = orig_class.__qualname__
    Decorator.__module__ = orig_class.__module__
    Decorator.__doc__ = orig_class.__doc__
    try:
        Decorator.__signature__ = inspect.signature(orig_class)   # help() and IDEs show the real arguments
    except (TypeError, ValueError):
        pass
    _decorators.add(Decorator)
    return Decorator

#----------------------------------------------------------------------------

def is_persistent(obj):
    """True for a class made by persistent_class() and for instances of one."""
    try:
        if obj in _decorators:
            return True
    except TypeError:
        pass
    return type(obj) in _decorators

#----------------------------------------------------------------------------

def import_hook(hook):
    """Register `hook(meta) -> meta`, applied to each persistent object's record before rebuilding.

    Example (rename a class that moved):
        >>> def rename(meta):
        ...     if meta.class_name == 'OldInjector':
        ...         meta.class_name = 'NewInjector'
        ...     return meta
        >>> persistence.import_hook(rename)
    """
    assert callable(hook)
    _import_hooks.append(hook)

def apply_import_hooks(meta):
    """Wrap a raw `meta` dict as EasyDicts and run the registered import hooks over it."""
    meta = dnnlib.EasyDict(meta)
    meta.state = dnnlib.EasyDict(meta.state)
    for hook in _import_hooks:
        meta = hook(meta)
        assert meta is not None, 'import hooks must return the meta they were given'
    return meta

#----------------------------------------------------------------------------

def _reconstruct_persistent_obj(meta):
    """Rebuild a persistent object whose source belongs to a module of this process (no exec)."""
    meta = apply_import_hooks(meta)
    if meta.get('version') != _version:
        raise UnsafePickleError(f'unsupported persistence format version {meta.get("version")!r} (expected {_version})')
    if meta.get('type') != 'class':
        raise UnsafePickleError(f'unsupported persistent object type {meta.get("type")!r}')
    module = _src_to_module_dict.get(meta.module_src)
    if module is None:
        raise UnsafePickleError(f'class {meta.class_name!r} comes from a module source this process does not have; '
            'load network pickles with stylegan2_ada_pytorch.legacy.load_network_pkl(), which never executes stored code')
    cls = getattr(module, meta.class_name, None)
    if not is_persistent(cls):
        raise UnsafePickleError(f'{module.__name__}.{meta.class_name} is not a persistent class')
    obj = cls.__new__(cls)
    setstate = getattr(obj, '__setstate__', None)
    if callable(setstate):
        setstate(meta.state)
    else:
        obj.__dict__.update(meta.state)
    return obj

#----------------------------------------------------------------------------

def _module_to_src(module):
    """The source text stored in pickles for `module` (its imports spelled the toolkit's way)."""
    src = _module_to_src_dict.get(module, None)
    if src is None:
        src = toolkit_import_spelling(inspect.getsource(module), module.__package__ or '')
        _module_to_src_dict[module] = src
        _src_to_module_dict[src] = module
    return src

def source_fingerprint(module_src):
    """sha256 (hex) of a module source as embedded in a pickle; identifies known toolkit files."""
    return hashlib.sha256(module_src.encode('utf-8')).hexdigest()

def toolkit_import_spelling(src, package):
    """Rewrite the imports of `src` so it runs against top-level `torch_utils` and `dnnlib`.

    Relative imports become absolute (resolved against `package`), and this package's
    `torch_utils`/`dnnlib` subpackages are named by their toolkit names. Other imports are kept.
    """
    def absolute(match):
        indent, dots, rest, names = match.group(1), match.group(2), match.group(3) or '', match.group(4)
        target = importlib.util.resolve_name(dots + rest, package) if dots else rest
        return f'{indent}from {target} import {names}'
    src = re.sub(r'^([ \t]*)from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+(.+)$', absolute, src, flags=re.M)
    prefix = re.escape(_PACKAGE)
    src = re.sub(rf'^([ \t]*)from[ \t]+{prefix}[ \t]+import[ \t]+(dnnlib|torch_utils)[ \t]*$', r'\1import \2', src, flags=re.M)
    src = re.sub(rf'\b{prefix}\.(torch_utils|dnnlib)\b', r'\1', src)
    return src

#----------------------------------------------------------------------------

_PLAIN_TYPES = (type(None), bool, int, float, complex, str, bytes, torch.Tensor, np.ndarray, np.generic,
    torch.dtype, torch.device)

def _check_plain_data(obj, where):
    """Raise a clear error if `obj` holds anything but plain data (what a safe loader can rebuild)."""
    if isinstance(obj, _PLAIN_TYPES) or is_persistent(obj):
        if isinstance(obj, np.ndarray) and obj.dtype == object:
            raise TypeError(f'{where}: object arrays cannot be stored in a network pickle')
        return
    if isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            _check_plain_data(item, f'{where}[{i}]')
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f'{where}: dict key {key!r} is not a string')
            _check_plain_data(value, f'{where}[{key!r}]')
        return
    raise TypeError(f'{where}: {type(obj).__module__}.{type(obj).__qualname__} is not plain data '
        '(use numbers, strings, lists, dicts/EasyDicts, tensors or persistent objects; name classes with class_name strings)')

#----------------------------------------------------------------------------
# Writing pickles in the toolkit's layout.

class _ToolkitPickler(pickle._Pickler):
    """A pickler that names our reconstruct function and EasyDict by the toolkit's global names."""

    dispatch = pickle._Pickler.dispatch.copy()
    dispatch[types.FunctionType] = lambda self, obj: self.save_global(obj)

    def __init__(self, file, protocol, aliases):
        super().__init__(file, protocol=protocol)
        self._aliases = aliases

    def save_global(self, obj, name=None):
        alias = self._aliases.get(id(obj))
        if alias is None:
            return super().save_global(obj, name)
        module, qualname = alias
        if self.proto >= 4:
            self.save(module)
            self.save(qualname)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f'{module}\n{qualname}\n'.encode('utf-8'))
        self.memoize(obj)

def dump(obj, file, protocol=4, toolkit_names=True):
    """Pickle `obj` into the binary file `file`, in the layout NVIDIA's loader reads.

    With `toolkit_names` the reconstruct function and EasyDict are written as
    `torch_utils.persistence._reconstruct_persistent_obj` and `dnnlib.util.EasyDict`; without it
    they keep this package's names.

    Example:
        >>> with open('net.pkl', 'wb') as f:
        ...     persistence.dump(dict(G=G, D=D, G_ema=G_ema), f)
    """
    aliases = {}
    if toolkit_names:
        aliases[id(_reconstruct_persistent_obj)] = _NV_RECONSTRUCT
        aliases[id(dnnlib.EasyDict)] = _NV_EASYDICT
    _ToolkitPickler(file, protocol, aliases).dump(obj)

def dumps(obj, protocol=4, toolkit_names=True):
    """`dump` into a bytes object."""
    buf = io.BytesIO()
    dump(obj, buf, protocol=protocol, toolkit_names=toolkit_names)
    return buf.getvalue()

#----------------------------------------------------------------------------
