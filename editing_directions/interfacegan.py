"""InterfaceGAN directions: the normal of a linear boundary that separates an attribute in W.

Shen et al., "Interpreting the Latent Space of GANs for Semantic Face Editing", CVPR 2020,
section 2.2: sample latent codes, score each generated image for an attribute, keep the codes
with the highest and the lowest scores (a fraction `ratio` each) as positives and negatives, fit a
linear classifier, and use its unit normal as the editing direction. With `negatives='rest'` (ours)
the negatives are instead a random sample, as many as the positives, of all codes outside the top
`ratio`: for one class of a multi-class classifier the lowest scores are mostly ONE other class
(on Fashion-MNIST the least trouser-like samples are sneakers), so the bottom-`ratio` boundary is a
"sneaker -> trousers" direction; 'rest' gives "anything -> trousers". We fit an L2-regularised
logistic regression with SciPy's L-BFGS (no scikit-learn) and report the accuracy on a held-out
part of the chosen codes, as InterfaceGAN does.

Shape letters: N = codes, D = G.w_dim.
"""

import csv
import os

import numpy as np
import scipy.optimize

from .direction import Direction, DirectionError, generator_fingerprint
from .sampling import w_from_seeds

__all__ = ['read_scores', 'read_latents', 'binarise', 'fit_logistic', 'fit_boundary', 'compute_interfacegan']

#----------------------------------------------------------------------------
# Input files.

def _csv_column(path, rows, column):
    header = None
    try:
        [float(v) for v in rows[0]]
    except ValueError:
        header, rows = [h.strip() for h in rows[0]], rows[1:]
    if column is None:
        idx = len(header or rows[0]) - 1
    elif header is not None and column in header:
        idx = header.index(column)
    elif str(column).lstrip('-').isdigit():
        idx = int(column)
    else:
        raise DirectionError(f'{path}: no column {column!r} (header: {header})')
    values = []
    for line, row in enumerate(rows, start=2 if header else 1):
        try:
            values.append(float(row[idx]))
        except (IndexError, ValueError):
            raise DirectionError(f'{path}: line {line}: no number in column {column if column is not None else idx}')
    return np.array(values, dtype=np.float64)

def read_scores(path, column=None):
    """Attribute scores [N] from a .npy ([N] or [N, 1]) or a .csv/.txt (one row per code).

    A CSV may have a header row; `column` picks a column by name or index (default: the last).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DirectionError(f'{path}: no such file')
    if path.endswith('.npy'):
        try:
            scores = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DirectionError(f'{path}: cannot read scores ({err})')
        if scores.ndim == 2 and scores.shape[1] == 1:
            scores = scores[:, 0]
        if scores.ndim != 1 or not np.issubdtype(scores.dtype, np.number):
            raise DirectionError(f'{path}: expected numeric scores of shape [N] or [N, 1], got {scores.dtype} {list(scores.shape)}')
        scores = scores.astype(np.float64)
    else:
        with open(path, newline='', encoding='utf-8') as f:
            rows = [row for row in csv.reader(f) if row and any(v.strip() for v in row)]
        if not rows:
            raise DirectionError(f'{path}: empty scores file')
        scores = _csv_column(path, rows, column)
    if not np.isfinite(scores).all():
        raise DirectionError(f'{path}: scores contain NaN or inf')
    return scores

def read_latents(path):
    """W codes [N, D] from a .npy ([N, D], or W+ [N, R, D] whose rows are all equal) or an .npz with 'w'."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DirectionError(f'{path}: no such file')
    try:
        data = np.load(path, allow_pickle=False)
        w = data['w'] if isinstance(data, np.lib.npyio.NpzFile) else data
    except (OSError, ValueError, KeyError) as err:
        raise DirectionError(f'{path}: cannot read latents ({err})')
    if w.ndim == 3:
        if not np.allclose(w, w[:, :1], rtol=0, atol=1e-6):
            raise DirectionError(f'{path}: W+ codes whose rows differ; InterfaceGAN needs W codes [N, w_dim]')
        w = w[:, 0]
    if w.ndim != 2 or not np.issubdtype(w.dtype, np.floating):
        raise DirectionError(f'{path}: expected float W codes [N, w_dim], got {w.dtype} {list(w.shape)}')
    return w.astype(np.float64)

#----------------------------------------------------------------------------
# Fitting.

NEGATIVES = ('bottom', 'rest')

def binarise(scores, ratio, negatives='bottom', seed=0):
    """Indices (positives, negatives): the top `ratio` fraction of scores, and the bottom `ratio`
    fraction (InterfaceGAN, negatives='bottom') or a RandomState(seed) sample of as many codes from
    all codes outside the top fraction (negatives='rest', ours)."""
    if not 0 < ratio <= 0.5:
        raise DirectionError(f'--ratio: must be in (0, 0.5], got {ratio}')
    num = int(len(scores) * ratio)
    if num < 4:
        raise DirectionError(f'--ratio: {ratio} of {len(scores)} codes leaves {num} per class; need at least 4 (more codes or a larger ratio)')
    if negatives not in NEGATIVES:
        raise DirectionError(f'--negatives: must be one of {", ".join(NEGATIVES)}, got {negatives!r}')
    order = np.argsort(scores, kind='stable')
    if negatives == 'rest':
        return order[-num:], np.sort(np.random.RandomState(seed).choice(order[:-num], num, replace=False))
    return order[-num:], order[:num]

def fit_logistic(x, y, l2=1e-4):
    """L2-regularised logistic regression, labels y in {-1, +1}; returns (weight [D], bias)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    def loss_and_grad(params):
        weight, bias = params[:-1], params[-1]
        margin = y * (x @ weight + bias)
        loss = np.mean(np.logaddexp(0, -margin)) + 0.5 * l2 * weight @ weight
        g = -y * 0.5 * (1 - np.tanh(0.5 * margin)) / len(y)                   # d loss / d (x w + b)
        return loss, np.concatenate([x.T @ g + l2 * weight, [g.sum()]])
    res = scipy.optimize.minimize(loss_and_grad, np.zeros(x.shape[1] + 1), jac=True, method='L-BFGS-B', options=dict(maxiter=1000))
    return res.x[:-1], float(res.x[-1])

def fit_boundary(w, scores, ratio=0.1, val_fraction=0.3, seed=0, l2=1e-4, negatives='bottom'):
    """Unit normal [D] of the boundary between the top `ratio` of codes and the negatives (see binarise), and metrics.

    The chosen codes of each class are shuffled with RandomState(seed); `val_fraction` of them are
    held out. The normal points towards higher scores. Returns (normal, info) with info holding
    train_accuracy, val_accuracy, num_positive, num_negative, num_val.
    """
    w = np.asarray(w, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if w.ndim != 2 or scores.shape != (w.shape[0],):
        raise DirectionError(f'--labels: {scores.shape[0] if scores.ndim else 0} scores for {w.shape[0]} latent codes; they must match one to one')
    if not 0 < val_fraction < 1:
        raise DirectionError(f'--val-fraction: must be in (0, 1), got {val_fraction}')
    pos, neg = binarise(scores, ratio, negatives=negatives, seed=seed)
    rnd = np.random.RandomState(seed)
    pos, neg = rnd.permutation(pos), rnd.permutation(neg)
    num_val = max(1, int(round(len(pos) * val_fraction)))
    train = np.concatenate([pos[num_val:], neg[num_val:]])
    val = np.concatenate([pos[:num_val], neg[:num_val]])
    labels = np.zeros(len(scores))
    labels[pos], labels[neg] = 1, -1
    centre = w[train].mean(axis=0)
    weight, bias = fit_logistic(w[train] - centre, labels[train], l2=l2)
    norm = np.linalg.norm(weight)
    if not norm > 0:
        raise DirectionError('--labels: the classifier found no direction (are all scores equal?)')
    def accuracy(idx):
        return float(np.mean(np.sign((w[idx] - centre) @ weight + bias) == labels[idx]))
    info = dict(train_accuracy=accuracy(train), val_accuracy=accuracy(val), num_positive=len(pos), num_negative=len(neg),
        num_val=2 * num_val, ratio=float(ratio), seed=int(seed), negatives=negatives)
    return weight / norm, info

def compute_interfacegan(G, scores, name, w=None, seeds=None, ratio=0.1, val_fraction=0.3, seed=0, default_alpha=3.0,
        generator_label='', labels_label='scores', negatives='bottom'):
    """An interfacegan Direction for G from attribute `scores` [N] of N latent codes.

    Give the codes as `w` [N, D] (W codes of G) or as `seeds` (z per seed through G.mapping).
    The direction is the unit normal [1, D] applied to all W+ rows; info holds the accuracies.

    Example:
        >>> d = compute_interfacegan(G, read_scores('smile.csv'), 'smile', seeds=range(2000))
        >>> d.info['val_accuracy']
    """
    if (w is None) == (seeds is None):
        raise DirectionError('give exactly one of --latents and --seeds')
    w = w_from_seeds(G, list(seeds)) if w is None else np.asarray(w, dtype=np.float64)
    if w.ndim != 2 or w.shape[1] != G.w_dim:
        raise DirectionError(f'--latents: expected W codes [N, {G.w_dim}], got {list(w.shape)}')
    normal, info = fit_boundary(w, scores, ratio=ratio, val_fraction=val_fraction, seed=seed, negatives=negatives)
    source = f'interfacegan: {labels_label}, {w.shape[0]} codes, negatives {negatives}, held-out accuracy {info["val_accuracy"]:.3f}'
    return Direction(name=name, kind='interfacegan', vector=normal[None].astype(np.float32), layers=(0, None),
        default_alpha=default_alpha, fingerprint=generator_fingerprint(G), generator=generator_label, source=source, info=info)

#----------------------------------------------------------------------------
