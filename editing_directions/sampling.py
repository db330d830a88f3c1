"""W codes of a generator: from a seeded batch of z, or one z per seed (the toolkit's convention).

Shape letters: N = samples, Z = G.z_dim, D = G.w_dim.
"""

import numpy as np
import torch

from .direction import DirectionError

__all__ = ['sample_w', 'w_from_seeds']

#----------------------------------------------------------------------------

@torch.no_grad()
def _map(G, z, batch_size):
    if getattr(G, 'c_dim', 0) != 0:
        raise DirectionError(f'directions can only be sampled from unconditional generators (this one has c_dim={G.c_dim})')
    device = next(G.mapping.parameters()).device
    rows = []
    for start in range(0, z.shape[0], batch_size):
        chunk = torch.from_numpy(z[start:start + batch_size]).to(device=device, dtype=torch.float32)
        ws = G.mapping(chunk, None, truncation_psi=1, skip_w_avg_update=True)    # [N, num_ws, D]
        rows.append(ws[:, 0].to(device='cpu', dtype=torch.float64))
    return torch.cat(rows).numpy()                                            # [ND] float64

def sample_w(G, num_samples, seed=0, batch_size=4096):
    """[N, D] float64 W codes of `num_samples` z drawn by np.random.RandomState(seed).randn(N, Z).

    Example:
        >>> w = sample_w(G, 10000, seed=0)       # no truncation, G.mapping.w_avg is not updated
    """
    if int(num_samples) < 2:
        raise DirectionError(f'--num-samples: must be at least 2, got {num_samples}')
    z = np.random.RandomState(seed).randn(int(num_samples), G.z_dim)
    return _map(G, z, batch_size)

def w_from_seeds(G, seeds, batch_size=4096):
    """[len(seeds), D] float64 W codes, z_i = np.random.RandomState(seeds[i]).randn(1, Z) (as stylegan2-generate)."""
    if len(seeds) == 0:
        raise DirectionError('--seeds: no seeds given')
    z = np.concatenate([np.random.RandomState(s).randn(1, G.z_dim) for s in seeds])
    return _map(G, z, batch_size)

#----------------------------------------------------------------------------
