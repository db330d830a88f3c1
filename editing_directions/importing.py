"""Import direction files published by e4e / HFGI / InterfaceGAN and bind them to a generator.

Layouts (measured on the files e4e publishes, see shared/fixtures/SOURCES.md):
- InterfaceGAN boundary `.pt`: a tensor [1, D] (W, e.g. age.pt, smile.pt) or [1, R, D] (W+, one
  row per layer, e.g. pose.pt, saved from a CUDA device); InterfaceGAN's own `boundary_*.npy`
  files are [1, D] arrays.
- GANSpace `.pt`: a dict with mean [1, D], comp [K, 1, D], std [K].
Files are read with torch.load(weights_only=True, map_location='cpu') (.npy: allow_pickle=False),
so nothing stored in them is executed.

Shape letters: K = components, R = W+ rows, D = w_dim.
"""

import os

import numpy as np
import torch

from stylegan2_ada_pytorch import dnnlib

from .direction import Direction, DirectionError, generator_fingerprint

__all__ = ['read_direction_file', 'import_direction_file']

#----------------------------------------------------------------------------

def _read_raw(path):
    if path.endswith('.npy'):
        try:
            return torch.from_numpy(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as err:
            raise DirectionError(f'{path}: cannot read .npy direction ({err})')
    try:
        return torch.load(path, weights_only=True, map_location='cpu')
    except Exception as err:    # torch raises many types (UnpicklingError, RuntimeError, EOFError, ...)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DirectionError(f'{path}: not a readable torch file ({first})')

def _ganspace_parts(path, obj):
    missing = [k for k in ('mean', 'comp', 'std') if not isinstance(obj.get(k), torch.Tensor)]
    if missing:
        raise DirectionError(f'{path}: a GANSpace file needs tensors mean, comp, std; missing {", ".join(missing)}')
    comp = obj['comp'].reshape(obj['comp'].shape[0], -1) if obj['comp'].ndim == 3 and obj['comp'].shape[1] == 1 else obj['comp']
    mean, std = obj['mean'].reshape(-1), obj['std'].reshape(-1)
    if comp.ndim != 2 or comp.shape[1] != mean.shape[0] or std.shape[0] != comp.shape[0]:
        raise DirectionError(f'{path}: inconsistent GANSpace shapes mean {list(obj["mean"].shape)}, comp {list(obj["comp"].shape)}, std {list(obj["std"].shape)}')
    return mean, comp, std

def read_direction_file(path, kind='auto'):
    """Parse a direction file into a dict: kind 'ganspace' with mean [D], comp [K, D], std [K],
    or kind 'interfacegan'/'custom' with vector [1, D] or [1, R, D]. `kind='auto'` picks by layout."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DirectionError(f'{path}: no such file')
    if kind not in ('auto', 'interfacegan', 'ganspace', 'custom'):
        raise DirectionError(f'--kind: unknown kind {kind!r} (auto, interfacegan, ganspace, custom)')
    obj = _read_raw(path)
    if isinstance(obj, dict):
        if kind not in ('auto', 'ganspace'):
            raise DirectionError(f'{path}: holds a GANSpace dict ({", ".join(sorted(map(str, obj)))}), not a single {kind} vector')
        mean, comp, std = _ganspace_parts(path, obj)
        return dict(kind='ganspace', mean=mean, comp=comp, std=std)
    if not isinstance(obj, torch.Tensor):
        raise DirectionError(f'{path}: expected a tensor or a GANSpace dict, got {type(obj).__name__}')
    if kind == 'ganspace':
        raise DirectionError(f'{path}: holds a single tensor {list(obj.shape)}, not a GANSpace dict (mean, comp, std)')
    shape = list(obj.shape)
    if obj.ndim == 1:
        vector = obj[None]                                                    # [D] -> [1, D]
    elif obj.ndim == 2:
        vector = obj if shape[0] == 1 else obj[None]                          # [1, D] or [R, D] -> [1, R, D]
    elif obj.ndim == 3 and shape[0] == 1:
        vector = obj[:, 0] if shape[1] == 1 else obj                          # [1, 1, D] -> [1, D]
    else:
        raise DirectionError(f'{path}: expected a direction [1, w_dim] or [1, num_ws, w_dim], got {shape}')
    return dict(kind='interfacegan' if kind == 'auto' else kind, vector=vector)

def import_direction_file(path, name, G, kind='auto', component=None, layers=(0, None), default_alpha=None, generator_label=''):
    """Directions from an e4e/HFGI/InterfaceGAN file, bound to generator G (its fingerprint).

    A single-vector file gives one direction called `name`. A GANSpace file gives `<name>_pc<k>`
    for every component, or only component `component` called `name` (e.g. an e4e-style named
    edit with its layer range). Widths and W+ row counts are checked against G.
    `default_alpha` defaults to 3.0 (interfacegan/custom) or 2.0 (ganspace strength).

    Example:
        >>> [pose] = import_direction_file('pose.pt', 'pose', G, generator_label='e4e_ffhq_encode.pt')
        >>> save_directions([pose], user_registry_dir(), dataset='ffhq')
    """
    parsed = read_direction_file(path, kind)
    source = f'imported from {os.path.basename(os.fspath(path))} (sha256 {dnnlib.util.file_sha256(path)[:16]})'
    fingerprint = generator_fingerprint(G)
    common = dict(layers=layers, fingerprint=fingerprint, generator=generator_label)
    if parsed['kind'] != 'ganspace':
        if component is not None:
            raise DirectionError(f'--component: {path} holds a single direction, not GANSpace components')
        directions = [Direction(name=name, kind=parsed['kind'], vector=parsed['vector'], source=source,
            default_alpha=3.0 if default_alpha is None else default_alpha, **common)]
    else:
        num = parsed['comp'].shape[0]
        if component is not None and not 0 <= component < num:
            raise DirectionError(f'--component: {path} has components 0..{num - 1}, got {component}')
        picks = range(num) if component is None else [component]
        directions = [Direction(name=name if component is not None else f'{name}_pc{k}', kind='ganspace',
            vector=parsed['comp'][k][None], mean=parsed['mean'][None], std=float(parsed['std'][k]), component=k,
            source=f'{source}, component {k}', default_alpha=2.0 if default_alpha is None else default_alpha, **common) for k in picks]
    for d in directions:
        d.check_generator(G)
    return directions

#----------------------------------------------------------------------------
