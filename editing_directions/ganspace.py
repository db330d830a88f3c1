"""GANSpace directions: principal components of sampled W codes.

Harkonen et al., "GANSpace: Discovering Interpretable GAN Controls", NeurIPS 2020, section 2:
PCA of w = mapping(z) over many random z; each component is an editing direction, its standard
deviation the natural step size. Edits follow e4e's rule (see direction.py): the strength SETS the
coordinate along the component, in std units.

Shape letters: N = samples, D = G.w_dim, K = components.
"""

import numpy as np

from .direction import Direction, DirectionError, generator_fingerprint
from .sampling import sample_w

__all__ = ['pca', 'compute_ganspace']

#----------------------------------------------------------------------------

def pca(w, num_components):
    """PCA of rows `w` [N, D] by SVD of the centred data (float64).

    Returns (mean [D], components [K, D] orthonormal rows ordered by decreasing variance, std [K]
    with std = singular value / sqrt(N - 1)). Each component's sign makes its largest-magnitude
    entry positive, so the result does not depend on the SVD routine's sign choice.
    """
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] < 2:
        raise DirectionError(f'pca: expected codes [N >= 2, D], got {list(w.shape)}')
    max_k = min(w.shape[1], w.shape[0] - 1)
    if not 1 <= num_components <= max_k:
        raise DirectionError(f'--components: must be between 1 and {max_k} for {w.shape[0]} samples of width {w.shape[1]}, got {num_components}')
    mean = w.mean(axis=0)
    _, s, vt = np.linalg.svd(w - mean, full_matrices=False)                   # s descending
    comps = vt[:num_components]                                               # [KD]
    signs = np.sign(comps[np.arange(num_components), np.abs(comps).argmax(axis=1)])
    comps = comps * signs[:, None]
    std = s[:num_components] / np.sqrt(w.shape[0] - 1)
    return mean, comps, std

def compute_ganspace(G, num_samples=20000, num_components=20, seed=0, name_prefix='pc', default_alpha=2.0, layers=(0, None), generator_label=''):
    """GANSpace directions `<name_prefix>0..K-1` for generator G (bound to its fingerprint).

    Samples `num_samples` z with np.random.RandomState(seed), maps them (no truncation), runs
    pca() on the W codes and returns K ganspace Directions sharing one mean. `layers` is the
    default W+ row range [start, end) each component edits (end None = all rows).

    Example:
        >>> dirs = compute_ganspace(G, num_samples=20000, num_components=20)
        >>> save_directions(dirs, user_registry_dir(), dataset='ffhq')
        >>> ws_edit = dirs[0].apply(ws, alpha=3.0)    # sets the pc0 coordinate to +3 std
    """
    w = sample_w(G, num_samples, seed=seed)                                   # [ND]
    mean, comps, std = pca(w, num_components)
    total_var = float(np.sum(np.var(w, axis=0, ddof=1)))
    fingerprint = generator_fingerprint(G)
    directions = []
    for k in range(num_components):
        info = dict(num_samples=int(num_samples), seed=int(seed), explained_variance_ratio=float(std[k] ** 2 / total_var))
        directions.append(Direction(name=f'{name_prefix}{k}', kind='ganspace', vector=comps[k][None].astype(np.float32),
            layers=layers, default_alpha=default_alpha, fingerprint=fingerprint, generator=generator_label,
            source=f'ganspace: PCA of {num_samples} w (seed {seed}), component {k}', mean=mean[None].astype(np.float32),
            std=float(std[k]), component=k, info=info))
    return directions

#----------------------------------------------------------------------------
