"""Shared machinery of the metrics: options, image streams, feature extractors, caching.

Shape letters: N images, C channels, H/W size, F feature dimensions.

Two feature spaces:
- `InceptionFeatures`: the 2048-d pool features of torchvision's Inception-v3, from a LOCAL
  state-dict file (`--inception-weights`, e.g. torchvision's `inception_v3_google-0cc3c7bd.pth`);
  nothing is downloaded. Values are comparable between runs that use the same file, not with
  numbers computed by the TensorFlow Inception graph.
- `PixelPCAFeatures`: images box-downsampled to at most 32x32, projected on the top principal
  components of the real images. Needs no weights at all; meant for small CPU experiments.
"""

import time

import numpy as np
import torch

from .. import dnnlib
from ..dnnlib import UserError

#----------------------------------------------------------------------------

class MetricOptions:
    def __init__(self, G=None, dataset_kwargs={}, num_gpus=1, rank=0, device=None, inception_weights=None, progress=True, batch=32):
        assert 0 <= rank < num_gpus
        self.G = G
        self.dataset_kwargs = dnnlib.EasyDict(dataset_kwargs)
        self.num_gpus = num_gpus
        self.rank = rank
        self.device = torch.device(device) if device is not None else torch.device('cpu')
        self.inception_weights = inception_weights
        self.progress = progress and rank == 0
        self.batch = batch

#----------------------------------------------------------------------------

def to_uint8(img):
    """Generator output [N, C, H, W] in about [-1, 1] -> uint8, as the toolkit converts images."""
    return (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)

def iterate_real_images(opts, max_items=None, xflip=False):
    """Yield uint8 [N, C, H, W] batches of the dataset (without x-flips unless asked)."""
    dataset = dnnlib.util.construct_class_by_name(**dict(opts.dataset_kwargs, xflip=xflip))
    num = len(dataset) if max_items is None else min(max_items, len(dataset))
    for start in range(0, num, opts.batch):
        items = [dataset[i][0] for i in range(start, min(start + opts.batch, num))]
        yield torch.from_numpy(np.stack(items))

def iterate_generated_images(opts, num_gen, seed=123):
    """Yield uint8 batches from opts.G with random z and labels drawn from the dataset."""
    G = opts.G
    dataset = dnnlib.util.construct_class_by_name(**opts.dataset_kwargs)
    rnd = np.random.RandomState(seed)
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, num_gen, opts.batch):
        n = min(opts.batch, num_gen - start)
        z = torch.randn([n, G.z_dim], generator=gen).to(opts.device)
        c = [dataset.get_label(rnd.randint(len(dataset))) for _ in range(n)]
        c = torch.from_numpy(np.stack(c)).to(opts.device)
        with torch.no_grad():
            img = G(z=z, c=c, noise_mode='const')
        yield to_uint8(img).cpu()

def collect_features(extractor, batches, label, progress):
    feats, t0, count = [], time.time(), 0
    for images in batches:
        feats.append(extractor(images))
        count += images.shape[0]
        if progress and time.time() - t0 > 10:
            print(f'  {label}: {count} images', flush=True)
            t0 = time.time()
    return np.concatenate(feats)

#----------------------------------------------------------------------------

class PixelPCAFeatures:
    """Top-k principal components of box-downsampled pixels, fitted on real images."""

    def __init__(self, num_components=64, max_res=32):
        self.num_components = num_components
        self.max_res = max_res
        self.mean = None
        self.basis = None   # [F, k]

    def _flatten(self, images):
        x = images.to(torch.float32) / 255
        if x.shape[2] > self.max_res:
            x = torch.nn.functional.adaptive_avg_pool2d(x, self.max_res)
        return x.flatten(1).numpy().astype(np.float64)

    def fit(self, real_batches):
        x = np.concatenate([self._flatten(b) for b in real_batches])
        self.mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - self.mean, full_matrices=False)
        k = min(self.num_components, max(x.shape[0] // 2, 1))   # keep the covariance well conditioned
        self.basis = vt[:k].T
        return self

    def __call__(self, images):
        assert self.basis is not None, 'fit() first'
        return (self._flatten(images) - self.mean) @ self.basis

class InceptionFeatures:
    """2048-d pool features of torchvision's Inception-v3 loaded from a local state dict."""

    def __init__(self, weights_path, device):
        import torchvision
        if weights_path is None:
            raise UserError('--inception-weights: FID/KID need Inception-v3 weights from a local file '
                '(a torchvision inception_v3 state dict); nothing is downloaded')
        try:
            state = torch.load(weights_path, map_location='cpu', weights_only=True)
        except (OSError, RuntimeError) as err:
            raise UserError(f'--inception-weights: cannot read {weights_path}: {err}')
        net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
        missing, unexpected = net.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise UserError(f'--inception-weights: {weights_path} is not an inception_v3 state dict '
                f'({len(missing)} missing keys, {len(unexpected)} unexpected)')
        net.fc = torch.nn.Identity()
        self.net = net.eval().requires_grad_(False).to(device)
        self.device = device
        self.mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
        self.std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)

    @torch.no_grad()
    def __call__(self, images):
        x = images.to(self.device).to(torch.float32) / 255
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = torch.nn.functional.interpolate(x, size=(299, 299), mode='bilinear', align_corners=False)
        x = (x - self.mean) / self.std
        return self.net(x).cpu().numpy().astype(np.float64)

#----------------------------------------------------------------------------

_real_feature_cache = dict()

def real_features(opts, extractor_key, extractor, max_items):
    """Features of the real images, cached per (dataset, extractor, count) within the process."""
    key = (repr(sorted(opts.dataset_kwargs.items())), extractor_key, max_items)
    if key not in _real_feature_cache:
        _real_feature_cache[key] = collect_features(extractor, iterate_real_images(opts, max_items), 'reals', opts.progress)
    return _real_feature_cache[key]

#----------------------------------------------------------------------------
