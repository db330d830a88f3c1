"""The scoring networks of one evaluation (LPIPS, ID embedding, attribute classifier, FID/KID features)
and the per-image scores of a batch, as plain lists (what report.json stores).

An image whose score is not finite (e.g. a zero embedding) is never dropped silently: `Scorer`
returns the value as None and the caller records the image and the metric under `unscored`.

Shape letters: N batch, C channels, R resolution, E embedding width.
"""

import math

import numpy as np
import torch

from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch.dnnlib import UserError
from gradstyle_plugin.eval import metrics

THUMB = 32                  # px: thumbnails for the pixel-PCA FID/KID features (the toolkit's PixelPCAFeatures size).

#----------------------------------------------------------------------------

def _sha(path):
    return None if path in (None, 'random') else dnnlib.util.file_sha256(path)

def lpips_backbone(weights, choice='auto'):
    """'vgg' or 'alex': `choice`, or with 'auto' told from the file's keys (VGG16 has features.28, AlexNet stops at features.10)."""
    if choice != 'auto' or weights in (None, 'random'):
        return 'vgg' if choice == 'auto' else choice
    try:
        state = torch.load(weights, map_location='cpu', weights_only=True, mmap=True)
    except Exception as err:     # noqa: BLE001 - any unreadable file is one user-facing line
        raise UserError(f'--lpips-weights: {weights}: cannot read ({str(err).splitlines()[0] if str(err) else type(err).__name__})')
    keys = set(state.get('state_dict', state)) if isinstance(state, dict) else set()
    if 'features.28.weight' in keys:
        return 'vgg'
    if 'features.10.weight' in keys:
        return 'alex'
    raise UserError(f'--lpips-weights: {weights} is neither a torchvision vgg16 nor an alexnet state_dict (no features.28 / features.10 weights)')

class Scorer:
    """Builds the metric networks from local files only (flags named in errors); in memory, never pickled."""

    def __init__(self, c, num_channels, device):
        from gradstyle_plugin import perceptual
        from gradstyle_plugin.eval.classifier import load_classifier
        self.device = device
        self.lpips_net = None
        self.lpips_backbone = lpips_backbone(c.lpips_weights, c.get('lpips_net', 'auto'))
        if c.lpips_weights is not None:
            try:
                self.lpips_net = perceptual.build_lpips(c.lpips_weights, backbone=self.lpips_backbone).to(device)
            except ValueError as err:
                raise UserError(str(err) if str(err).startswith('--') else f'--lpips-weights: {err}')
        self.classifier = load_classifier(c.classifier, device=device) if c.classifier else None
        self.id_net = None
        if c.id_weights is not None:
            try:
                self.id_net = perceptual.build_id_loss(c.id_weights, c.id_domain).to(device)
            except ValueError as err:
                raise UserError(str(err) if str(err).startswith('--') else f'--id-weights: {err}')
        self.id_source = 'id-weights' if self.id_net is not None else ('classifier' if self.classifier is not None else None)
        self.inception = None
        if c.inception_weights is not None:
            from stylegan2_ada_pytorch.metrics.metric_utils import InceptionFeatures
            self.inception = InceptionFeatures(c.inception_weights, device)
        self.num_channels = num_channels
        self.record = dict(
            lpips=dict(backbone=self.lpips_backbone, version='0.1', resolution='network resolution', weights=c.lpips_weights, sha256=_sha(c.lpips_weights)) if self.lpips_net else None,
            id=self._id_record(c), classifier=dict(file=c.classifier, sha256=_sha(c.classifier), attributes=self.classifier.attributes,
                class_names=self.classifier.class_names) if self.classifier else None,
            fid_features=dict(kind='inception-v3 pool (torchvision)', weights=c.inception_weights, sha256=_sha(c.inception_weights))
                if self.inception else dict(kind=f'pixel PCA fitted on the sources ({THUMB} px uint8 thumbnails, toolkit PixelPCAFeatures; no weights; ours)'))

    def _id_record(self, c):
        if self.id_net is not None:
            return dict(source='id-weights', network='ArcFace IR-SE-50' if self.id_net.domain == 'face' else 'MoCo-v2 ResNet-50',
                weights=c.id_weights, sha256=_sha(c.id_weights), preprocessing=f'perceptual.IDLoss ({self.id_net.domain})')
        if self.classifier is not None:
            return dict(source='classifier features', weights=c.classifier, sha256=_sha(c.classifier))
        return None

    @torch.no_grad()
    def embed(self, x01):
        """Unit-norm-comparable embedding [N, E] of images in [0, 1] (None when no ID source is given)."""
        x = (x01 * 2 - 1).to(self.device)
        if self.id_net is not None:
            return self.id_net.embed(metrics.to_rgb(x)).cpu()
        if self.classifier is not None:
            return self.classifier.features(x).cpu()
        return None

    def attribute_score(self, x01, name):
        if self.classifier is None or not self.classifier.has_attribute(name):
            return None
        return self.classifier.attribute_score((x01 * 2 - 1).to(self.device), name).cpu()

    @torch.no_grad()
    def reconstruction(self, src, rec, src_embed=None):
        """{metric: [N] list} of Table 1 for images in [0, 1] (None entries: not defined / not finite)."""
        out = dict(l2=metrics.l2(rec, src), psnr=metrics.psnr(rec, src), ssim=metrics.ssim(rec, src), ms_ssim=metrics.ms_ssim(rec, src))
        out['lpips'] = metrics.lpips(self.lpips_net, rec.to(self.device), src.to(self.device)).cpu() if self.lpips_net else None
        out['id'] = metrics.cosine(self.embed(rec), src_embed) if src_embed is not None else None
        return {k: as_list(v, src.shape[0]) for k, v in out.items()}

    def fid_features(self, u8):
        """FID/KID input of uint8 images [N, C, R, R]: Inception features [N, 2048], or uint8 thumbnails of at most
        THUMB px (the toolkit's PixelPCAFeatures is fitted on the sources' thumbnails at the end, `pca_fid_kid`)."""
        if self.inception is not None:
            return self.inception(u8)
        x = u8.to(torch.float32)
        if x.shape[2] > THUMB:
            x = torch.nn.functional.adaptive_avg_pool2d(x, THUMB)
        return x.round().clamp(0, 255).to(torch.uint8).numpy()

def fid_kid(real, gen, pixel):
    """{'fid', 'kid'} of two sets of fid_features(): Inception features as they are, thumbnails through pixel PCA."""
    if pixel:
        from stylegan2_ada_pytorch.metrics.metric_utils import PixelPCAFeatures
        extractor = PixelPCAFeatures().fit([torch.from_numpy(np.asarray(real))])
        real, gen = extractor(torch.from_numpy(np.asarray(real))), extractor(torch.from_numpy(np.asarray(gen)))
    return metrics.fid_kid(real, gen)

def as_list(values, n):
    """[N] tensor -> list of floats with None for non-finite values; None -> [None] * n."""
    if values is None:
        return [None] * n
    return [float(v) if math.isfinite(float(v)) else None for v in values.flatten().tolist()]

#----------------------------------------------------------------------------
