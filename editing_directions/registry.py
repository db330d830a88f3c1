"""On-disk registry of named editing directions: `<registry>/<dataset>_<space>/<name>.npy` + `manifest.json`.

Layout (InterFaceGAN's folder idea, our file names). A registry is a folder of groups; a group is
one generator's W (`<dataset>_w`) or W+ (`<dataset>_wplus`) space:

    <registry>/ffhq_w/manifest.json
    <registry>/ffhq_w/age.npy                      # float32 [1, 512]
    <registry>/ffhq_w/pc0.npy                      # ganspace component, float32 [1, 512]
    <registry>/ffhq_w/ganspace_mean_<sha8>.npy     # shared PCA mean, float32 [1, 512]
    <registry>/ffhq_wplus/pose.npy                 # float32 [1, 18, 512]

`manifest.json` = {"format": "gradstyle-directions/1", "directions": {<name>: <entry>}} where an
entry holds: file, kind (interfacegan | ganspace | custom), space (W | W+), shape, layers
[start, end) with end null = all rows, default_alpha, fingerprint (generator_fingerprint of the
generator it was made for, or null = unbound), generator (label of that generator), source
(provenance), info (metrics); ganspace entries add mean_file, std, component.

Registries searched, in order: the folders you pass, then `$GRADSTYLE_DIRECTIONS` (default
`~/.cache/gradstyle/directions`), then the folder of this package (shipped directions).
Files are written under a temporary name and renamed, and .npy files are read with
allow_pickle=False.
"""

import hashlib
import json
import os
import re

import numpy as np

from stylegan2_ada_pytorch import dnnlib

from .direction import Direction, DirectionError, FingerprintMismatchError, generator_fingerprint, short_fingerprint

__all__ = ['MANIFEST_NAME', 'ENV_VAR', 'user_registry_dir', 'shipped_registry_dir', 'default_registry_dirs', 'group_name',
    'save_directions', 'list_directions', 'find_directions', 'resolve', 'update_direction_info']

MANIFEST_NAME = 'manifest.json'
MANIFEST_FORMAT = 'gradstyle-directions/1'
ENV_VAR = 'GRADSTYLE_DIRECTIONS'
_NAME_RE = re.compile(r'^[a-z0-9][a-z0-9_\-]*$')

#----------------------------------------------------------------------------
# Where registries live.

def user_registry_dir():
    """`$GRADSTYLE_DIRECTIONS`, else `~/.cache/gradstyle/directions` (where the CLI writes by default)."""
    return os.environ.get(ENV_VAR) or os.path.join(os.path.expanduser('~'), '.cache', 'gradstyle', 'directions')

def shipped_registry_dir():
    """The folder of the `editing_directions` package (directions shipped with gradstyle)."""
    return os.path.dirname(os.path.abspath(__file__))

def default_registry_dirs(extra=()):
    """`extra` folders first, then the user registry, then the shipped one (duplicates removed)."""
    dirs = []
    for d in list(extra) + [user_registry_dir(), shipped_registry_dir()]:
        d = os.path.abspath(os.path.expanduser(os.fspath(d)))
        if d not in dirs:
            dirs.append(d)
    return dirs

def check_name(name, what='direction name'):
    """Names are lower case: letters, digits, '_' and '-', starting with a letter or digit."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise DirectionError(f'{what} {name!r} is not valid: use lower-case letters, digits, "_" and "-"')
    return name

def group_name(dataset, space):
    """'<dataset>_w' or '<dataset>_wplus'; `dataset` is lower-cased and non-alphanumerics become '-'."""
    label = re.sub(r'[^a-z0-9]+', '-', str(dataset).lower()).strip('-')
    if not label:
        raise DirectionError(f'--dataset: label {dataset!r} is empty after cleaning')
    return f'{label}_{"w" if space == "W" else "wplus"}'

#----------------------------------------------------------------------------
# Low-level file helpers.

def _save_npy(path, array):
    with dnnlib.util.atomic_write(path) as f:
        np.save(f, np.ascontiguousarray(array, dtype='<f4'), allow_pickle=False)

def _load_npy(path, expected_shape):
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DirectionError(f'{path}: cannot read direction file ({err})')
    if expected_shape is not None and list(array.shape) != list(expected_shape):
        raise DirectionError(f'{path}: shape {list(array.shape)} differs from the manifest ({list(expected_shape)})')
    return array

def _read_manifest(folder):
    path = os.path.join(folder, MANIFEST_NAME)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, 'r', encoding='utf-8') as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise DirectionError(f'{path}: not a readable manifest ({err})')
    if not isinstance(data, dict) or data.get('format') != MANIFEST_FORMAT or not isinstance(data.get('directions'), dict):
        raise DirectionError(f'{path}: not a {MANIFEST_FORMAT} manifest (expected keys "format" and "directions")')
    return data['directions']

def _write_manifest(folder, entries):
    data = dict(format=MANIFEST_FORMAT, directions={name: entries[name] for name in sorted(entries)})
    with dnnlib.util.atomic_write(os.path.join(folder, MANIFEST_NAME), 'w') as f:
        f.write(json.dumps(data, indent=2) + '\n')

#----------------------------------------------------------------------------
# Direction <-> manifest entry.

def _entry_of(direction, folder):
    entry = dict(file=f'{direction.name}.npy', kind=direction.kind, space=direction.space, shape=list(direction.vector.shape),
        layers=list(direction.layers), default_alpha=direction.default_alpha, fingerprint=direction.fingerprint,
        generator=direction.generator, source=direction.source, info=dict(direction.info))
    _save_npy(os.path.join(folder, entry['file']), direction.vector.numpy())
    if direction.kind == 'ganspace':
        mean = direction.mean.numpy().astype('<f4')
        entry['mean_file'] = f'ganspace_mean_{hashlib.sha256(mean.tobytes()).hexdigest()[:8]}.npy'
        mean_path = os.path.join(folder, entry['mean_file'])
        if not os.path.isfile(mean_path):
            _save_npy(mean_path, mean)
        entry.update(std=direction.std, component=direction.component)
    return entry

def _direction_of(name, entry, folder):
    where = os.path.join(folder, MANIFEST_NAME)
    if not isinstance(entry, dict) or not isinstance(entry.get('file'), str) or os.path.basename(entry['file']) != entry['file']:
        raise DirectionError(f'{where}: direction {name!r}: entry must be an object with a plain "file" name')
    vector = _load_npy(os.path.join(folder, entry['file']), entry.get('shape'))
    mean = None
    if entry.get('kind') == 'ganspace' and entry.get('mean_file'):
        mean = _load_npy(os.path.join(folder, os.path.basename(str(entry['mean_file']))), None)
    try:
        return Direction(name=name, kind=entry.get('kind'), vector=vector, layers=tuple(entry.get('layers', (0, None))),
            default_alpha=entry.get('default_alpha', 3.0), fingerprint=entry.get('fingerprint'), generator=entry.get('generator', ''),
            source=entry.get('source', ''), mean=mean, std=entry.get('std'), component=entry.get('component'),
            group=os.path.basename(folder), info=dict(entry.get('info') or {}))
    except (DirectionError, TypeError, ValueError) as err:
        raise DirectionError(f'{where}: {err}' if isinstance(err, DirectionError) else f'{where}: direction {name!r}: {err}')

#----------------------------------------------------------------------------
# Public API.

def save_directions(directions, registry_dir, dataset, overwrite=False):
    """Write directions into `<registry_dir>/<dataset>_<space>/` and update its manifest.

    Returns the list of .npy paths written. An existing name in the same group is an error
    unless `overwrite=True`.

    Example:
        >>> d = Direction('smile', 'interfacegan', n, fingerprint=generator_fingerprint(G), generator='ffhq.pkl')
        >>> save_directions([d], '~/.cache/gradstyle/directions', dataset='ffhq')   # -> .../ffhq_w/smile.npy
    """
    registry_dir = os.path.abspath(os.path.expanduser(os.fspath(registry_dir)))
    by_group = {}
    for d in directions:
        check_name(d.name)
        by_group.setdefault(group_name(dataset, d.space), []).append(d)
    written = []
    for group, items in by_group.items():
        folder = os.path.join(registry_dir, group)
        os.makedirs(folder, exist_ok=True)
        entries = _read_manifest(folder)
        clashes = sorted({d.name for d in items if d.name in entries})
        if clashes and not overwrite:
            raise DirectionError(f'{folder}: direction {clashes[0]!r} already exists (pass overwrite / --overwrite to replace it)')
        for d in items:
            entries[d.name] = _entry_of(d, folder)
            d.group = group
            written.append(os.path.join(folder, entries[d.name]['file']))
        _write_manifest(folder, entries)
    return written

def _natural_key(name):
    # 'pc2' before 'pc10'.
    return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', name)]

def list_directions(registry_dirs=None):
    """Every direction in the registries (default: default_registry_dirs()), in search order.

    Example:
        >>> for d in list_directions():
        ...     print(d.group, d.describe(), d.fingerprint)
    """
    dirs = default_registry_dirs() if registry_dirs is None else [os.path.abspath(os.path.expanduser(os.fspath(d))) for d in registry_dirs]
    found = []
    for root in dirs:
        if not os.path.isdir(root):
            continue
        for group in sorted(os.listdir(root)):
            folder = os.path.join(root, group)
            if os.path.isfile(os.path.join(folder, MANIFEST_NAME)):
                entries = _read_manifest(folder)
                found += [_direction_of(name, entries[name], folder) for name in sorted(entries, key=_natural_key)]
    return found

def find_directions(name, registry_dirs=None):
    """Directions called `name` ('smile', or 'ffhq_w/smile' to pick a group), in search order."""
    group, _, base = name.rpartition('/')
    return [d for d in list_directions(registry_dirs) if d.name == base and group in ('', d.group)]

def resolve(name, G, registry_dirs=None, force=False, generator_label=None):
    """The direction called `name` that belongs to generator G, checked against G's shapes.

    Among the directions with that name (see find_directions), the first one whose fingerprint
    equals generator_fingerprint(G) is returned. If none matches, FingerprintMismatchError names
    both generators, unless `force=True`, which returns the first one found anyway. Shapes
    (w_dim, W+ rows, layer range) are always checked. `generator_label` names G in messages.

    Example:
        >>> G = legacy.load_network_pkl('ffhq.pkl')['G_ema']
        >>> smile = resolve('smile', G)
        >>> img = G.synthesis(smile.apply(G.mapping(z, None), alpha=2.0))
    """
    candidates = find_directions(name, registry_dirs)
    if not candidates:
        dirs = default_registry_dirs() if registry_dirs is None else list(registry_dirs)
        raise DirectionError(f'no direction named {name!r} in {", ".join(str(d) for d in dirs)}')
    fingerprint = generator_fingerprint(G)
    direction = next((d for d in candidates if d.fingerprint == fingerprint), None)
    if direction is None and not force:
        d = candidates[0]
        made_for = f'generator {d.generator!r} (fingerprint {short_fingerprint(d.fingerprint)})' if d.fingerprint else 'no generator (unbound)'
        this = f'{generator_label!r} ' if generator_label else ''
        more = f' and {len(candidates) - 1} more with that name' if len(candidates) > 1 else ''
        raise FingerprintMismatchError(f'direction {d.group}/{d.name}{more} was made for {made_for}, not for this generator '
            f'{this}(fingerprint {short_fingerprint(fingerprint)}); pass force=True (--force) to use it anyway')
    direction = direction or candidates[0]
    direction.check_generator(G)
    return direction

#----------------------------------------------------------------------------

def update_direction_info(direction, info, registry_dirs=None):
    """Merge `info` (plain data, e.g. a measured useful alpha range) into the manifest entry of `direction`.

    The entry is the first one in search order with the direction's group, name and fingerprint.
    Returns the manifest path; DirectionError when the direction is not in any registry.
    """
    dirs = default_registry_dirs() if registry_dirs is None else [os.path.abspath(os.path.expanduser(os.fspath(d))) for d in registry_dirs]
    for root in dirs:
        folder = os.path.join(root, direction.group)
        entries = _read_manifest(folder) if direction.group and os.path.isdir(folder) else {}
        entry = entries.get(direction.name)
        if entry is not None and entry.get('fingerprint') == direction.fingerprint:
            entry['info'] = dict(entry.get('info') or {}, **info)
            _write_manifest(folder, entries)
            direction.info.update(info)
            return os.path.join(folder, MANIFEST_NAME)
    raise DirectionError(f'direction {direction.group}/{direction.name} is not in the registries {", ".join(dirs)}; its info cannot be recorded')

#----------------------------------------------------------------------------
