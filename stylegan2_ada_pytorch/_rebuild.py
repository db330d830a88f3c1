"""Turning unpickled `PersistentRecord`s into this package's modules (no stored code runs).

For each top-level record (G, D, G_ema, augment_pipe, ...): find its class through the
allow-list, check every `class_name` in its init kwargs, translate NVIDIA stylegan3's flat
Generator layout into our nested one, construct it with `.eval().requires_grad_(False)`, then walk
the record tree and the module tree side by side: same children, same class names, the same set of
parameters and buffers with equal shapes and dtypes (copied), equal plain attributes (conv_clamp,
use_fp16, architecture, w_avg_beta, ...), and the recorded `training` flag restored.
"""

import copy
import math

import numpy as np
import torch

from . import dnnlib
from ._class_allowlist import check_class_names, resolve_record_class
from ._safe_unpickle import NetworkPickleError, PersistentRecord
from .torch_utils.persistence import UnsafePickleError

#----------------------------------------------------------------------------
# NVIDIA stylegan3's networks_stylegan2.py: Generator takes **synthesis_kwargs flat, and several
# defaults differ (toolkit-compat.md 4.4, 4.7, 4.8, 4.10).

_G_TOP_LEVEL = ('z_dim', 'c_dim', 'w_dim', 'img_resolution', 'img_channels', 'mapping_kwargs', 'synthesis_kwargs')
_SG3_SYNTHESIS_DEFAULTS = dict(num_fp16_res=4, conv_clamp=256)
_SG3_MAPPING_DEFAULTS = dict(w_avg_beta=0.998)
_SG3_D_DEFAULTS = dict(num_fp16_res=4, conv_clamp=256)
_SG3_DROPPED = ('fused_modconv_default',)  # sg3 speed switch ('inference_only'); our blocks use sg2-ada's rule

def _sg3_generator_kwargs(kwargs):
    out = dnnlib.EasyDict({k: v for k, v in kwargs.items() if k in _G_TOP_LEVEL})
    synthesis = dnnlib.EasyDict(out.get('synthesis_kwargs', {}))
    synthesis.update({k: v for k, v in kwargs.items() if k not in _G_TOP_LEVEL and k not in _SG3_DROPPED})
    for key, value in _SG3_SYNTHESIS_DEFAULTS.items():
        synthesis.setdefault(key, value)
    mapping = dnnlib.EasyDict(out.get('mapping_kwargs', {}))
    for key, value in _SG3_MAPPING_DEFAULTS.items():
        mapping.setdefault(key, value)
    out.mapping_kwargs, out.synthesis_kwargs = mapping, synthesis
    return out

def translate_init_kwargs(class_name, layout, kwargs):
    """Init kwargs as recorded -> kwargs for our class of the same name."""
    kwargs = dnnlib.EasyDict(copy.deepcopy(kwargs))
    if layout == 'auto' and class_name == 'Generator':
        layout = 'sg3' if any(k not in _G_TOP_LEVEL for k in kwargs) else 'ada'
    if layout == 'sg3' and class_name == 'Generator':
        return _sg3_generator_kwargs(kwargs)
    if layout == 'sg3' and class_name == 'Discriminator':
        for key, value in _SG3_D_DEFAULTS.items():
            kwargs.setdefault(key, value)
    return kwargs

#----------------------------------------------------------------------------
# Walking the record tree and the module tree together.

def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value

def _same_value(a, b):
    a, b = _plain(a), _plain(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b

_PLAIN_ATTR_TYPES = (type(None), bool, int, float, str, list, tuple, np.generic)

def _check_attributes(record, module, path):
    for key, value in record.state.items():
        if key.startswith('_') or key == 'training' or not isinstance(value, _PLAIN_ATTR_TYPES):
            continue
        if key in module.__dict__ and not _same_value(value, module.__dict__[key]):
            raise NetworkPickleError(f'{path or "<root>"}.{key} is {_plain(value)!r} in the file but '
                f'{_plain(module.__dict__[key])!r} in the rebuilt {type(module).__name__}')

def _named_items(state, key, path):
    items = state.get(key, {})
    if not isinstance(items, dict):
        raise NetworkPickleError(f'{path or "<root>"}: state[{key!r}] is not a dict')
    return {name: value for name, value in items.items() if value is not None}

def _copy_tensors(record, module, path):
    for key in ('_parameters', '_buffers'):
        src, dst = _named_items(record.state, key, path), _named_items(module.__dict__, key, path)
        if set(src) != set(dst):
            only_file, only_ours = sorted(set(src) - set(dst)), sorted(set(dst) - set(src))
            raise NetworkPickleError(f'{path or "<root>"}: {key[1:]} differ: only in the file {only_file}, '
                f'only in the rebuilt {type(module).__name__} {only_ours}')
        for name, tensor in src.items():
            target, full = dst[name], f'{path}.{name}' if path else name
            if not isinstance(tensor, torch.Tensor):
                raise NetworkPickleError(f'{full} is a {type(tensor).__name__} in the file, not a tensor')
            if tensor.shape != target.shape or tensor.dtype != target.dtype:
                raise NetworkPickleError(f'{full} is {list(tensor.shape)} {tensor.dtype} in the file but '
                    f'{list(target.shape)} {target.dtype} in the rebuilt network')
            with torch.no_grad():
                target.copy_(tensor)

def load_record_into(record, module, path=''):
    """Copy tensors, check attributes and restore `training` from `record` into `module`, recursively."""
    if not isinstance(record.state, dict):
        raise NetworkPickleError(f'{path or "<root>"}: {record.class_name} has no state in the file')
    if record.class_name != type(module).__name__:
        raise NetworkPickleError(f'{path or "<root>"} is a {record.class_name} in the file but a '
            f'{type(module).__name__} in the rebuilt network')
    _check_attributes(record, module, path)
    _copy_tensors(record, module, path)
    src_children, dst_children = _named_items(record.state, '_modules', path), _named_items(module.__dict__, '_modules', path)
    if set(src_children) != set(dst_children):
        raise NetworkPickleError(f'{path or "<root>"}: submodules differ: only in the file '
            f'{sorted(set(src_children) - set(dst_children))}, only in the rebuilt network {sorted(set(dst_children) - set(src_children))}')
    for name, child in src_children.items():
        full = f'{path}.{name}' if path else name
        if not isinstance(child, PersistentRecord):
            raise NetworkPickleError(f'{full} in the file is not a persistent module record')
        load_record_into(child, dst_children[name], full)
    training = record.state.get('training', False)
    if not isinstance(training, bool):
        raise NetworkPickleError(f'{path or "<root>"}.training is not a bool')
    module.training = training

#----------------------------------------------------------------------------

def _init_args(record, key):
    where = f'{record.class_name} init args'
    args, kwargs = record.state.get('_init_args', ()), record.state.get('_init_kwargs', {})
    if not isinstance(args, (tuple, list)) or not isinstance(kwargs, dict):
        raise NetworkPickleError(f'{key}: {where} are missing or malformed')
    _check_plain(args, where)
    _check_plain(kwargs, where)
    return tuple(args), kwargs

def _check_plain(obj, where):
    if isinstance(obj, PersistentRecord):
        raise NetworkPickleError(f'{where}: persistent objects as constructor arguments are not supported')
    if isinstance(obj, dict):
        for v in obj.values():
            _check_plain(v, where)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _check_plain(v, where)

def build_from_record(record, key):
    """Construct our module for a top-level record `key` (e.g. 'G_ema') and load it from the record."""
    cls, layout = resolve_record_class(record)
    args, kwargs = _init_args(record, key)
    check_class_names(kwargs, f'{key}.init_kwargs')
    check_class_names(list(args), f'{key}.init_args')
    kwargs = translate_init_kwargs(record.class_name, layout, kwargs)
    try:
        module = cls(*args, **kwargs)
    except UnsafePickleError:
        raise
    except Exception as err:
        raise NetworkPickleError(f'{key}: cannot rebuild {record.class_name} from its recorded init kwargs '
            f'({type(err).__name__}: {err})') from None
    module = module.eval().requires_grad_(False)
    load_record_into(record, module, '')
    return module

def rebuild(obj, key='<root>'):
    """Replace every PersistentRecord inside plain containers `obj` by the rebuilt module."""
    if isinstance(obj, PersistentRecord):
        return build_from_record(obj, key)
    if isinstance(obj, dnnlib.EasyDict):
        return dnnlib.EasyDict({k: rebuild(v, f'{key}.{k}') for k, v in obj.items()})
    if isinstance(obj, dict):
        return type(obj)((k, rebuild(v, k if key == '<root>' else f'{key}.{k}')) for k, v in obj.items())
    if isinstance(obj, list):
        return [rebuild(v, f'{key}[{i}]') for i, v in enumerate(obj)]
    if isinstance(obj, tuple):
        return tuple(rebuild(v, f'{key}[{i}]') for i, v in enumerate(obj))
    return obj

#----------------------------------------------------------------------------
