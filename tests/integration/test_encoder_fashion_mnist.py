"""A short `small` gradstyle-train-encoder run inverts a tiny generator trained on real Fashion-MNIST.

The generator is trained here (cfg tiny, as in test_train_fashion_mnist.py) on the first images of the
4000-image t10k slice; the encoder on the same training images. Held out: the last 256 images of the
slice, seen by neither. Compared on them (L2 in [-1, 1], SSIM from scikit-image on [0, 1]):
(a) latent_avg alone (do nothing), (b) the encoder before training, (c) the trained encoder.
Also: inverting the generator's own samples beats latent_avg; the pairing check passes for the pair
(gradstyle-edit and gradstyle-train take the snapshot as --encoder without --force) and refuses the
trained encoder with another generator, naming both files.
CI runs it trimmed (size_scale 0.25: 1000 images, generator 6 kimg, encoder 1 kimg); --full-size
trains 24 + 4 kimg on 3744 images.
"""

import copy
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from skimage.metrics import structural_similarity

from stylegan2_ada_pytorch import dataset_tool, dnnlib, legacy
from stylegan2_ada_pytorch.cli import train as train_cli
from stylegan2_ada_pytorch.training import training_loop
from gradstyle_plugin import edit as gse
from gradstyle_plugin import pairing
from gradstyle_plugin.encoder_train_config import setup_encoder_training_config
from gradstyle_plugin.train_config import setup_training_config

from ..conftest import FASHION_DIR

FASHION = str(FASHION_DIR / 't10k-images-idx3-ubyte.gz')
NUM_HELD_OUT = 256

# Margins (ours), on the held-out real images: the trained encoder's L2 at most this fraction of
# the baseline's, its SSIM at least this much above the baseline's.
L2_RATIO_MAX = 0.6
SSIM_GAIN_MIN = 0.05
GENERATED_RATIO_MAX = 0.8       # MSE(G(E(x)), x) / MSE(G(latent_avg), x) on the generator's samples

#----------------------------------------------------------------------------

def _zip(tmp_path, name, count):
    path = str(tmp_path / name)
    result = CliRunner().invoke(dataset_tool.main, ['--source', FASHION, '--dest', path, '--max-images', str(count),
        '--width', '32', '--height', '32'])
    assert result.exit_code == 0, result.output
    return path

def _train_generator(tmp_path, data, kimg):
    _desc, args = train_cli.setup_training_loop_kwargs(data=data, cfg='tiny', aug='noaug', workers=0, seed=0)
    args.pop('num_gpus')
    args.update(run_dir=str(tmp_path), total_kimg=kimg, kimg_per_tick=2, image_snapshot_ticks=1000, network_snapshot_ticks=1000,
        image_grid_max=16)
    nets = training_loop.training_loop(**args)
    path = str(tmp_path / 'G.pkl')
    legacy.save_network_pkl(dict(G=nets.G, D=nets.D, G_ema=nets.G_ema), path)
    return path

def _train_encoder(tmp_path, network, data, kimg):
    _desc, args, init = setup_encoder_training_config(network=network, data=data, preset='small', kimg=kimg, workers=0, snap=1000,
        progressive_start=kimg / 4, progressive_step=kimg / 40)
    args.pop('num_gpus')
    args.run_dir = str(tmp_path)
    args.resume_pkl = str(tmp_path / 'init.pkl')
    legacy.save_network_pkl(dict(G=init.G, D=init.D, G_ema=init.G_ema, encoder=init.encoder, latent_D=init.latent_D), args.resume_pkl)
    untrained = copy.deepcopy(init.encoder).eval()
    nets = training_loop.training_loop(**args)
    snap = sorted(f for f in os.listdir(tmp_path) if f.startswith('network-snapshot-'))[-1]
    return nets, untrained, str(tmp_path / snap)

def _held_out(all_zip):
    dataset = dnnlib.util.construct_class_by_name(class_name='stylegan2_ada_pytorch.training.dataset.ImageFolderDataset', path=all_zip)
    images = np.stack([dataset[i][0] for i in range(len(dataset) - NUM_HELD_OUT, len(dataset))])
    return torch.from_numpy(images).float() / 127.5 - 1                      # [N, 1, 32, 32]

def _scores(x, y):
    l2 = float((y - x).square().mean())
    a = (x[:, 0].numpy() + 1) / 2
    b = (y[:, 0].clamp(-1, 1).numpy() + 1) / 2
    ssim = float(np.mean([structural_similarity(a[i], b[i], data_range=1.0) for i in range(len(a))]))
    return l2, ssim

@torch.no_grad()
def _reconstruct(G, E, x):
    return G.synthesis(E(x)[0], noise_mode='const')

#----------------------------------------------------------------------------

@pytest.mark.slow
def test_small_encoder_inverts_held_out_fashion_mnist(tmp_path, size_scale):
    num_train = min(int(4000 * size_scale), 4000 - NUM_HELD_OUT)
    all_zip = _zip(tmp_path, 'all.zip', 4000)
    train_zip = _zip(tmp_path, 'train.zip', num_train)
    os.makedirs(tmp_path / 'gen')
    os.makedirs(tmp_path / 'enc')
    network = _train_generator(tmp_path / 'gen', train_zip, kimg=24 * size_scale)
    nets, untrained, snap = _train_encoder(tmp_path / 'enc', network, train_zip, kimg=4 * size_scale)
    G, E = nets.G_ema, nets.encoder.eval()
    x = _held_out(all_zip)

    with torch.no_grad():
        avg = G.synthesis(E.latent_avg.unsqueeze(0).expand(len(x), -1, -1), noise_mode='const')
    scores = dict(latent_avg=_scores(x, avg), untrained=_scores(x, _reconstruct(G, untrained, x)), trained=_scores(x, _reconstruct(G, E, x)))
    generated = pairing.reconstruction_ratio(G, E, num_samples=16, seed=1)
    print(f'held-out Fashion-MNIST ({NUM_HELD_OUT} images, {num_train} for training, generator {24 * size_scale:g} kimg, '
        f'encoder {4 * size_scale:g} kimg): ' + ', '.join(f'{k} L2 {v[0]:.4f} SSIM {v[1]:.4f}' for k, v in scores.items())
        + f'; generated samples MSE ratio vs latent_avg {generated:.3f}')
    for baseline in ['latent_avg', 'untrained']:
        assert scores['trained'][0] < L2_RATIO_MAX * scores[baseline][0], baseline
        assert scores['trained'][1] > scores[baseline][1] + SSIM_GAIN_MIN, baseline
    assert generated < GENERATED_RATIO_MAX

    # Pairing: this pair passes; the trained encoder with another generator is refused, naming both files.
    with open(network, 'rb') as f:
        G_file = legacy.load_network_pkl(f)['G_ema']
    figures = pairing.check_pairing(G_file, E, network, snap)                 # the default check (8 samples, seed 0)
    print(f'pairing check: latent_avg distance {figures.latent_avg_distance:.3f}, reconstruction ratio {figures.reconstruction_ratio:.3f}')
    assert figures.reconstruction_ratio < GENERATED_RATIO_MAX
    editor = gse.load_editor(network, encoder=snap, device='cpu')             # gradstyle-edit --encoder: no --force needed
    assert editor.mode == 'e4e'
    _desc, args, _init = setup_training_config(network=network, encoder=snap, data=train_zip, preset='tiny', workers=0)
    assert args.extra_kwargs.encoder.img_channels == 1                         # gradstyle-train --encoder: no --force needed
    other = type(G_file)(*G_file.init_args, **G_file.init_kwargs).eval()      # same architecture, its own weights
    with pytest.raises(dnnlib.UserError, match=rf'^--encoder: {snap} does not belong to the generator of --network other.pkl'):
        pairing.check_pairing(other, E, 'other.pkl', snap)

#----------------------------------------------------------------------------
