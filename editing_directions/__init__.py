"""Named editing directions, bound to the generator whose W space they live in, and their registry.

    >>> import editing_directions as ed
    >>> G = legacy.load_network_pkl('ffhq.pkl')['G_ema']
    >>> ed.generator_fingerprint(G)                                   # sha256 of mapping weights + w_avg
    >>> dirs = ed.compute_ganspace(G, num_samples=20000, num_components=20)     # pc0..pc19
    >>> [pose] = ed.import_direction_file('pose.pt', 'pose', G)                  # e4e InterfaceGAN file
    >>> ed.save_directions(dirs + [pose], ed.user_registry_dir(), dataset='ffhq')
    >>> smile = ed.resolve('smile', G)            # FingerprintMismatchError if made for another G
    >>> ws_edit = smile.apply(G.mapping(z, None), alpha=2.0)

Formats and rules: see README.md in this folder and the module docstrings (direction.py for how
each kind is applied, registry.py for the files).
"""

from .direction import KINDS, Direction, DirectionError, FingerprintMismatchError, generator_fingerprint, short_fingerprint
from .registry import (ENV_VAR, MANIFEST_NAME, default_registry_dirs, find_directions, group_name, list_directions, resolve,
    save_directions, shipped_registry_dir, update_direction_info, user_registry_dir)
from .sampling import sample_w, w_from_seeds
from .ganspace import compute_ganspace, pca
from .interfacegan import compute_interfacegan, fit_boundary, read_latents, read_scores
from .importing import import_direction_file, read_direction_file

__all__ = [
    'KINDS', 'Direction', 'DirectionError', 'FingerprintMismatchError', 'generator_fingerprint', 'short_fingerprint',
    'ENV_VAR', 'MANIFEST_NAME', 'default_registry_dirs', 'find_directions', 'group_name', 'list_directions', 'resolve',
    'save_directions', 'shipped_registry_dir', 'update_direction_info', 'user_registry_dir',
    'sample_w', 'w_from_seeds', 'compute_ganspace', 'pca',
    'compute_interfacegan', 'fit_boundary', 'read_latents', 'read_scores',
    'import_direction_file', 'read_direction_file',
]
