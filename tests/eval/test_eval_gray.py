"""gradstyle-eval on a grayscale (1-channel) GradStyle network: every metric is defined and the
reconstruction scores match skimage on the uint8 images (Fashion-MNIST-like demo networks are gray).

Networks: an untrained gray tiny generator with perturbed GradStyle stages and a gray small encoder
(no method here is a baseline; the test checks the 1-channel plumbing and the numbers' definitions).
"""

import numpy as np
import PIL.Image
import pytest
import skimage.metrics
import torch

from stylegan2_ada_pytorch import dnnlib, legacy, testing
from gradstyle_plugin import evaluate
from gradstyle_plugin.attach import attach, stage_modules
from gradstyle_plugin.encoder import small_encoder_kwargs
from gradstyle_plugin.eval.classifier import AttributeClassifier, save_classifier
from ..plugin.test_edit import _perturb

@pytest.mark.integration
def test_grayscale_network(tmp_path):
    G0 = testing.tiny_generator(img_channels=1)
    torch.manual_seed(0)
    G = attach(G0, preset='tiny')
    for i, stage in enumerate(stage_modules(G).values()):
        _perturb(stage, 0.05, seed=i)
    E = dnnlib.util.construct_class_by_name(**small_encoder_kwargs(32, w_dim=32, feature_channels=32, img_channels=1)).eval()
    snap = str(tmp_path / 'gray.pkl')
    legacy.save_network_pkl(dict(G=G, D=None, G_ema=G, encoder=E), snap)
    clf = AttributeClassifier(img_resolution=32, img_channels=1, num_classes=2, channels=(8,), feature_dim=8)
    save_classifier(str(tmp_path / 'clf.pt'), clf.eval(), ['a', 'b'])
    images = tmp_path / 'imgs'
    images.mkdir()
    rnd = np.random.RandomState(0)
    for i in range(3):
        PIL.Image.fromarray(rnd.randint(0, 256, (32, 32), dtype=np.uint8), mode='L').save(images / f'{i}.png')
    report = evaluate(snap, str(images), methods=['e4e', 'gradstyle'], classifier=str(tmp_path / 'clf.pt'), lpips_weights='random',
        log=lambda s: None)
    assert report['protocol']['channels'] == 1
    with torch.no_grad():
        src = np.stack([np.asarray(PIL.Image.open(images / f'{i}.png')) for i in range(3)])
        ws = E(torch.from_numpy(src)[:, None].float() / 127.5 - 1)[0]
        rec = (G0.synthesis(ws, noise_mode='const')[:, 0] * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
    ssim = np.mean([skimage.metrics.structural_similarity(src[i] / 255, rec[i] / 255, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=1) for i in range(3)])
    t = report['methods']['e4e']['table1']
    assert abs(t['ssim'] - ssim) < 1e-4
    assert all(report['methods'][m]['table1'][k] is not None for m in ['e4e', 'gradstyle'] for k in ['l2', 'psnr', 'lpips', 'id', 'fid'])
