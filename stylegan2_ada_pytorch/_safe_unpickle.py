"""Allow-listed unpickling of network pickles: nothing stored in the file is ever executed.

A network pickle written by the StyleGAN2-ADA-PyTorch toolkit names a handful of globals (the
persistence reconstruct function, EasyDict, OrderedDict, set, torch's tensor rebuild functions,
a few numpy helpers; toolkit-compat.md section 2.4). `SafeUnpickler.find_class` resolves exactly
those, each to a small validating replacement written here, and refuses every other global with
`UnsafePickleError` before anything from the file runs. Persistent objects are not rebuilt: each
becomes a `PersistentRecord` (class name, source fingerprint, state) that `_rebuild.py` turns
into this package's classes. The module source stored in the pickle is hashed and dropped.
"""

import collections
import io
import pickle
import warnings

import numpy as np
import torch
import torch._utils

from . import dnnlib
from .torch_utils import persistence
from .torch_utils.persistence import UnsafePickleError

#----------------------------------------------------------------------------

class PersistentRecord:
    """What a pickled persistent object turns into: plain data, nothing constructed.

    `class_name` is the recorded class name (e.g. 'SynthesisLayer'), `fingerprint` the sha256 of
    the stored module source, `state` the object's `__dict__` as pickled (children are records).
    """
    __slots__ = ('class_name', 'fingerprint', 'state')

    def __init__(self, class_name, fingerprint, state):
        self.class_name = class_name
        self.fingerprint = fingerprint
        self.state = state

    def __setstate__(self, state):
        raise UnsafePickleError('refusing BUILD on a persistent object record')

    def __repr__(self):
        return f'PersistentRecord({self.class_name!r}, sha256={self.fingerprint[:12]})'

class TorchModuleRecord(PersistentRecord):
    """A plain torch.nn module (ModuleDict, Conv2d, ...) pickled by torch's own reduce.

    The unpickler creates it with NEWOBJ (no arguments) and fills it with BUILD; it is never
    constructed as a real module, only matched against the rebuilt network by `_rebuild.py`.
    """
    __slots__ = ()
    torch_class = None  # set per allowed torch.nn class by _torch_record_type()

    def __new__(cls, *args):
        if args:
            raise UnsafePickleError(f'refusing arguments to torch module {cls.torch_class}')
        obj = object.__new__(cls)
        obj.state = None  # until BUILD
        return obj

    def __init__(self, *args):  # never called by the unpickler; keep it inert
        pass

    class_name = property(lambda self: self.torch_class.rpartition('.')[2])
    fingerprint = property(lambda self: self.torch_class)

    def __setstate__(self, state):
        if not isinstance(state, dict) or self.state is not None:
            raise UnsafePickleError(f'invalid state for torch module {self.torch_class}')
        self.state = state

def _torch_record_type(dotted):
    return type(f'TorchModuleRecord_{dotted.rpartition(".")[2]}', (TorchModuleRecord,), dict(__slots__=(), torch_class=dotted))

# torch.nn modules that plugins commonly nest inside persistent injectors/encoders.
TORCH_MODULE_CLASSES = (
    'torch.nn.modules.container.ModuleDict', 'torch.nn.modules.container.ModuleList', 'torch.nn.modules.container.Sequential',
    'torch.nn.modules.conv.Conv2d', 'torch.nn.modules.linear.Linear', 'torch.nn.modules.linear.Identity',
    'torch.nn.modules.linear.NonDynamicallyQuantizableLinear', 'torch.nn.modules.activation.MultiheadAttention',
    'torch.nn.modules.normalization.LayerNorm', 'torch.nn.modules.normalization.GroupNorm',
    'torch.nn.modules.batchnorm.BatchNorm1d', 'torch.nn.modules.batchnorm.BatchNorm2d',
    'torch.nn.modules.activation.ReLU', 'torch.nn.modules.activation.LeakyReLU', 'torch.nn.modules.activation.PReLU',
    'torch.nn.modules.activation.GELU', 'torch.nn.modules.activation.SiLU', 'torch.nn.modules.activation.Sigmoid',
    'torch.nn.modules.activation.Tanh', 'torch.nn.modules.activation.Softmax',
    'torch.nn.modules.pooling.AdaptiveAvgPool2d', 'torch.nn.modules.pooling.MaxPool2d', 'torch.nn.modules.pooling.AvgPool2d',
    'torch.nn.modules.flatten.Flatten', 'torch.nn.modules.dropout.Dropout',
)

#----------------------------------------------------------------------------

class TFNetworkStub(dnnlib.EasyDict):
    """Stands in for `dnnlib.tflib.network.Network` of TensorFlow-era pickles: its state as a dict."""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise UnsafePickleError('TensorFlow Network state is not a dict')
        self.update(state)

#----------------------------------------------------------------------------
# Validating replacements for the allowed globals.

def _record_persistent_obj(meta):
    if not isinstance(meta, dict):
        raise UnsafePickleError('persistent object record is not a dict')
    meta = persistence.apply_import_hooks(meta)
    if meta.get('version') != persistence._version:
        raise UnsafePickleError(f'unsupported persistence format version {meta.get("version")!r} (expected {persistence._version})')
    if meta.get('type') != 'class':
        raise UnsafePickleError(f'unsupported persistent object type {meta.get("type")!r}')
    class_name, module_src = meta.get('class_name'), meta.get('module_src')
    if not isinstance(class_name, str) or not class_name.isidentifier():
        raise UnsafePickleError(f'invalid persistent class name {class_name!r}')
    if not isinstance(module_src, str):
        raise UnsafePickleError(f'module source of {class_name} is not a string')
    if not isinstance(meta.state, dict):
        raise UnsafePickleError(f'state of {class_name} is not a dict')
    return PersistentRecord(class_name, persistence.source_fingerprint(module_src), dict(meta.state))

def _load_storage_from_bytes(data):
    if not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError('tensor storage payload is not bytes')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)  # TypedStorage deprecation notice
        storage = torch.load(io.BytesIO(bytes(data)), weights_only=True, map_location='cpu')
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise UnsafePickleError(f'tensor storage payload decoded to {type(storage).__name__}, not a storage')
    return storage

def _is_int_tuple(value):
    return isinstance(value, tuple) and all(type(v) is int for v in value)

def _check_no_hooks(hooks, what):
    if not isinstance(hooks, dict) or len(hooks) != 0:
        raise UnsafePickleError(f'refusing {what} with backward hooks')

def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise UnsafePickleError('tensor rebuilt from something that is not a storage')
    if type(storage_offset) is not int or not _is_int_tuple(size) or not _is_int_tuple(stride):
        raise UnsafePickleError('tensor rebuilt with invalid offset/size/stride')
    if not isinstance(requires_grad, bool) or metadata not in (None, {}):
        raise UnsafePickleError('tensor rebuilt with invalid requires_grad or metadata')
    _check_no_hooks(backward_hooks, 'tensor')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)
        return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, collections.OrderedDict())

def _rebuild_parameter(data, requires_grad, backward_hooks):
    if not isinstance(data, torch.Tensor) or not isinstance(requires_grad, bool):
        raise UnsafePickleError('parameter rebuilt from invalid data')
    _check_no_hooks(backward_hooks, 'parameter')
    return torch.nn.Parameter(data, requires_grad=requires_grad)

_NUMERIC_KINDS = set('biufc')

def _numeric_dtype(*args):
    if not args or not isinstance(args[0], str) or any(not isinstance(a, (bool, int)) for a in args[1:]):
        raise UnsafePickleError('invalid numpy dtype arguments')
    dtype = np.dtype(args[0])
    if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise UnsafePickleError(f'refusing numpy dtype {args[0]!r} (numeric dtypes only)')
    return dtype

def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMERIC_KINDS or not isinstance(data, bytes):
        raise UnsafePickleError('invalid numpy scalar')
    if len(data) != dtype.itemsize:
        raise UnsafePickleError('numpy scalar payload has the wrong size')
    return np.frombuffer(data, dtype=dtype)[0].copy()

class _NdarrayToken:
    """What `numpy.ndarray` resolves to: only `_reconstruct` accepts it; calling it is refused."""
    def __new__(cls, *args, **kwargs):
        raise UnsafePickleError('refusing direct construction of numpy.ndarray')

def _numpy_reconstruct(subtype, shape, typecode):
    if subtype is not _NdarrayToken or not _is_int_tuple(shape) or typecode not in (b'b', 'b'):
        raise UnsafePickleError('invalid numpy array reconstruction')
    return np.ndarray.__new__(np.ndarray, shape, dtype=np.uint8)  # ndarray.__setstate__ sets the real dtype/data

#----------------------------------------------------------------------------

_ALLOWED_GLOBALS = {
    ('torch_utils.persistence', '_reconstruct_persistent_obj'):                 _record_persistent_obj,
    ('stylegan2_ada_pytorch.torch_utils.persistence', '_reconstruct_persistent_obj'): _record_persistent_obj,
    ('dnnlib.util', 'EasyDict'):                                               dnnlib.EasyDict,
    ('stylegan2_ada_pytorch.dnnlib.util', 'EasyDict'):                         dnnlib.EasyDict,
    ('dnnlib.tflib.network', 'Network'):                                       TFNetworkStub,
    ('collections', 'OrderedDict'):                                            collections.OrderedDict,
    ('builtins', 'set'):                                                       set,
    ('torch._utils', '_rebuild_tensor_v2'):                                    _rebuild_tensor_v2,
    ('torch._utils', '_rebuild_parameter'):                                    _rebuild_parameter,
    ('torch.storage', '_load_from_bytes'):                                     _load_storage_from_bytes,
    ('numpy', 'dtype'):                                                        _numeric_dtype,
    ('numpy', 'ndarray'):                                                      _NdarrayToken,
}
for _dotted in TORCH_MODULE_CLASSES:
    _ALLOWED_GLOBALS[tuple(_dotted.rsplit('.', 1))] = _torch_record_type(_dotted)
for _np in ('numpy.core.multiarray', 'numpy._core.multiarray'):
    _ALLOWED_GLOBALS[(_np, 'scalar')] = _numpy_scalar
    _ALLOWED_GLOBALS[(_np, '_reconstruct')] = _numpy_reconstruct

ALLOWED_GLOBALS = frozenset(_ALLOWED_GLOBALS)  # public view, for tests and docs

class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the allow-listed globals; everything else is refused."""

    def find_class(self, module, name):
        target = _ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise UnsafePickleError(f'refusing global {module}.{name}')
        return target

    def persistent_load(self, pid):
        raise UnsafePickleError('refusing persistent id (not a network pickle)')

#----------------------------------------------------------------------------

class NetworkPickleError(ValueError):
    """A network file that cannot be read: truncated, corrupt, or not matching our classes."""

def safe_load(file, name):
    """Unpickle `file` (binary file object) with SafeUnpickler; errors are one line naming `name`."""
    try:
        return SafeUnpickler(file).load()
    except UnsafePickleError as err:
        raise UnsafePickleError(f'{name}: {err}') from None
    except Exception as err:  # anything else raised while decoding the bytes means a damaged file
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise NetworkPickleError(f'{name}: truncated or corrupt network pickle ({type(err).__name__}: {detail})') from None

#----------------------------------------------------------------------------
