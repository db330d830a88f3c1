"""Reconstruction and editing metrics of `gradstyle-eval` (paper Table 1: ID, SSIM, L2, LPIPS, PSNR;
Table 2: edit ID), one pinned protocol.

The protocol (recorded in every report by `protocol_record()`): both images are compared as the
uint8 pictures a user would save (generator output clamped to [-1, 1] and quantised exactly as
the toolkit writes PNGs), at the network resolution, per image:

    L2       mean squared error on the [-1, 1] scale (the scale of e4e's L2 loss and of the paper's Table 1)
    PSNR     10 log10(1 / MSE) on the [0, 1] scale (data range 1), capped at PSNR_CAP dB for identical images (ours)
    SSIM     Wang et al. 2004: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, data range 1, on [0, 1], mean of the
             map without its 5 px border (skimage's definition; torchmetrics' map, cropped here)
    MS-SSIM  Wang et al. 2003, 5 scales with the paper's betas, negative terms clipped to 0 (torchmetrics' 'relu');
             only where the image side exceeds (11 - 1) * 2^4 = 160 px, else None (the size does not allow it)
    LPIPS    Zhang et al. 2018 v0.1 through the lpips package, VGG16 or AlexNet trunk (recorded), on [-1, 1]
             (grayscale repeated to RGB)
    ID       cosine of unit-norm embeddings (ArcFace IR-SE-50 / MoCo-v2 through perceptual.IDLoss, or the
             features of an attribute classifier, see classifier.py)

Libraries: torchmetrics' SSIM maps and cs terms for SSIM / MS-SSIM (the means taken here, see _ssim_terms; checked against scikit-image and a NumPy reference in
tests/plugin/test_eval_metrics.py), lpips for LPIPS, the toolkit's `metrics.frechet` / `metrics.kernel`
for FID / KID of the reconstructions. L2 / PSNR are one line each.

Shape letters: N batch, C channels (1 or 3), H W height width, E embedding width.
"""

import math

import numpy as np
import torch

from stylegan2_ada_pytorch.dnnlib import UserError
from stylegan2_ada_pytorch.torch_utils import misc

PSNR_CAP        = 100.0                             # dB for identical images (MSE 0); ours.
SSIM_KWARGS     = dict(gaussian_kernel=True, sigma=1.5, kernel_size=11, k1=0.01, k2=0.03, data_range=1.0)
SSIM_BORDER     = 5                                 # (11 - 1) / 2: the map's border left out of the mean.
MS_SSIM_BETAS   = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_MIN     = (11 - 1) * 2 ** (len(MS_SSIM_BETAS) - 1)     # side must exceed this (160 px)

#----------------------------------------------------------------------------

def _torchmetrics():
    try:
        import torchmetrics.functional.image as tmi
    except ImportError:
        raise UserError('gradstyle-eval needs torchmetrics (SSIM / MS-SSIM): pip install -e ".[eval]"')
    return tmi

def quantize(img):
    """Generator output [N, C, H, W] in about [-1, 1] -> float32 in [0, 1] on the uint8 grid (as saved to PNG)."""
    return ((img.to(torch.float32) * 127.5 + 128).clamp(0, 255).to(torch.uint8).to(torch.float32) / 255)

def from_uint8(arr):
    """uint8 [N, H, W, C] (ndarray or tensor) -> float32 [N, C, H, W] in [0, 1]."""
    x = torch.as_tensor(np.asarray(arr) if not isinstance(arr, torch.Tensor) else arr)
    return (x.permute(0, 3, 1, 2).to(torch.float32) / 255).contiguous()

def _check(x, y):
    misc.assert_shape(x, [None, None, None, None])
    misc.assert_shape(y, list(x.shape))

def l2(x, y):
    """[N] mean squared error on the [-1, 1] scale of images x, y [N, C, H, W] in [0, 1]."""
    _check(x, y)
    return ((x - y) * 2).double().square().mean([1, 2, 3]).float()

def psnr(x, y):
    """[N] PSNR in dB with data range 1 of images in [0, 1] (PSNR_CAP where they are identical)."""
    _check(x, y)
    mse = (x - y).double().square().mean([1, 2, 3])
    return (10 * torch.log10(1 / mse.clamp(min=10 ** (-PSNR_CAP / 10)))).float()

def _ssim_terms(x, y):
    # (SSIM [N], contrast-structure [N]) averaged over the map with the window's border (5 px) cropped, as
    # Wang et al. / skimage do. torchmetrics averages its SSIM map over the reflect-padded border too (0.02
    # off skimage at 64 px, measured), so its full map is taken and cropped here; its cs term is cropped already.
    tmi = _torchmetrics()
    _mean, full = tmi.structural_similarity_index_measure(x, y, reduction='none', return_full_image=True, **SSIM_KWARGS)
    _mean, cs = tmi.structural_similarity_index_measure(x, y, reduction='none', return_contrast_sensitivity=True, **SSIM_KWARGS)
    p = SSIM_BORDER
    return full[:, :, p:-p, p:-p].mean([1, 2, 3]).float(), cs.reshape(x.shape[0]).float()

def ssim(x, y):
    """[N] SSIM (Gaussian 11 / 1.5, data range 1, 5 px border cropped) of images in [0, 1]; channels averaged."""
    _check(x, y)
    if min(x.shape[2:]) <= 2 * SSIM_BORDER:
        raise ValueError(f'SSIM needs images larger than {2 * SSIM_BORDER} px, got {list(x.shape[2:])}')
    return _ssim_terms(x, y)[0]

def ms_ssim_allowed(size):
    return min(size) > MS_SSIM_MIN

def ms_ssim(x, y):
    """[N] MS-SSIM of images in [0, 1], or None when the images are too small for 5 scales (<= 160 px)."""
    _check(x, y)
    if not ms_ssim_allowed(x.shape[2:]):
        return None
    # prod_j relu(cs_j)^beta_j over the first scales times relu(SSIM)^beta at the last; 2x2 average pooling between scales.
    out = torch.ones(x.shape[0])
    for j, beta in enumerate(MS_SSIM_BETAS):
        s, cs = _ssim_terms(x, y)
        out = out * (s if j == len(MS_SSIM_BETAS) - 1 else cs).clamp(min=0) ** beta
        x, y = torch.nn.functional.avg_pool2d(x, 2), torch.nn.functional.avg_pool2d(y, 2)
    return out

def to_rgb(x):
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

def lpips(net, x, y):
    """[N] LPIPS of images in [0, 1] with an `lpips.LPIPS` module (inputs mapped to [-1, 1], gray repeated to RGB)."""
    _check(x, y)
    return net(to_rgb(x) * 2 - 1, to_rgb(y) * 2 - 1).reshape(x.shape[0]).float()

def cosine(a, b):
    """[N] cosine similarity of embeddings a, b [N, E] (normalised here; 0 for a zero vector)."""
    misc.assert_shape(b, list(a.shape))
    a, b = a.double().flatten(1), b.double().flatten(1)
    return (torch.nn.functional.normalize(a, dim=1) * torch.nn.functional.normalize(b, dim=1)).sum(1).float()

#----------------------------------------------------------------------------
# FID / KID of a set of reconstructions against their sources (the toolkit's implementations).

def fid_kid(real_features, gen_features, seed=0, kid_subsets=100):
    """{'fid', 'kid'} between two [N, F] feature arrays; None for a metric that needs more images (N < 2)."""
    from stylegan2_ada_pytorch.metrics import frechet, kernel
    real, gen = np.asarray(real_features, np.float64), np.asarray(gen_features, np.float64)
    if min(len(real), len(gen)) < 2:
        return dict(fid=None, kid=None)
    return dict(fid=frechet.fid_from_features(real, gen), kid=kernel.kid_from_features(real, gen, num_subsets=kid_subsets, seed=seed))

#----------------------------------------------------------------------------

def finite_mean(values):
    """Mean of the finite values of a list (None when there are none)."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    return float(np.mean(v)) if v else None

def protocol_record():
    """The pinned definitions, as recorded in report.json."""
    return dict(
        compared_as='uint8 pictures (output clamped to [-1, 1] and quantised as PNGs are written), at the network resolution',
        l2='mean squared error on the [-1, 1] scale', psnr=f'10 log10(1 / MSE) on the [0, 1] scale (data range 1), capped at {PSNR_CAP:g} dB',
        psnr_range=[0.0, 1.0], ssim=dict(library='torchmetrics maps, 5 px border cropped (= skimage)', border=SSIM_BORDER, **SSIM_KWARGS),
        ms_ssim=dict(library='torchmetrics cs terms / cropped SSIM map, 2x2 average pooling', betas=list(MS_SSIM_BETAS), normalize='relu', min_side_exclusive=MS_SSIM_MIN, **SSIM_KWARGS),
        lpips='lpips package v0.1 on [-1, 1], grayscale repeated to RGB', id='cosine of unit-norm embeddings (1 = same identity)')

#----------------------------------------------------------------------------
