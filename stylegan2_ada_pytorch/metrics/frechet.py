"""Frechet distance between Gaussians fitted to feature sets (FID, Heusel et al. 2017)."""

import numpy as np
import scipy.linalg

#----------------------------------------------------------------------------

def feature_moments(features):
    """Mean [F] and covariance [F, F] (float64) of an [N, F] feature array."""
    features = np.asarray(features, dtype=np.float64)
    assert features.ndim == 2 and features.shape[0] >= 2, 'need at least two feature vectors'
    return features.mean(axis=0), np.cov(features, rowvar=False)

def frechet_distance(mu1, sigma1, mu2, sigma2):
    """|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)); tiny imaginary parts of the root are dropped."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    assert mu1.shape == mu2.shape and sigma1.shape == sigma2.shape
    diff = np.square(mu1 - mu2).sum()
    root = scipy.linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(root).all():
        # Nearly singular product: regularise both covariances slightly.
        offset = np.eye(sigma1.shape[0]) * 1e-6
        root = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    root = np.real(root)
    return float(diff + np.trace(sigma1 + sigma2 - root * 2))

def fid_from_features(real_features, gen_features):
    mu_r, sigma_r = feature_moments(real_features)
    mu_g, sigma_g = feature_moments(gen_features)
    return frechet_distance(mu_r, sigma_r, mu_g, sigma_g)

#----------------------------------------------------------------------------
