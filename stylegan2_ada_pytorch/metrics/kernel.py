"""Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with a cubic polynomial kernel."""

import numpy as np

#----------------------------------------------------------------------------

def kid_from_features(real_features, gen_features, num_subsets=100, max_subset_size=1000, seed=0):
    """Average over random subsets of the unbiased MMD^2 estimate with k(x, y) = (x.y / F + 1)^3."""
    real = np.asarray(real_features, dtype=np.float64)
    gen = np.asarray(gen_features, dtype=np.float64)
    n = real.shape[1]
    m = min(real.shape[0], gen.shape[0], max_subset_size)
    assert m >= 2, 'need at least two feature vectors on each side'
    rnd = np.random.RandomState(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = gen[rnd.choice(gen.shape[0], m, replace=False)]
        y = real[rnd.choice(real.shape[0], m, replace=False)]
        a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
        b = (x @ y.T / n + 1) ** 3
        total += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    return float(total / num_subsets / m)

#----------------------------------------------------------------------------
