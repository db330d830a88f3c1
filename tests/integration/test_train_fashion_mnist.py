"""A tiny StyleGAN2 trained on real Fashion-MNIST (32x32) on CPU gets measurably better.

Data: the first 4000 Fashion-MNIST t10k images, in tests/data (real idx files). Criterion: FID in pixel-PCA space (`fid2k_pix`'s feature space, no downloaded
weights) between generated images and held-in reals, before and after training.
CI runs it trimmed (size_scale 0.25: 1000 images, 6 kimg); --full-size trains 24 kimg on 4000.
"""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from stylegan2_ada_pytorch import dataset_tool, dnnlib
from stylegan2_ada_pytorch.cli import train as train_cli
from stylegan2_ada_pytorch.metrics import frechet, metric_utils
from stylegan2_ada_pytorch.training import training_loop

from ..conftest import FASHION_DIR

FASHION = str(FASHION_DIR / 't10k-images-idx3-ubyte.gz')

#----------------------------------------------------------------------------

def _pixel_fid(G, dataset_kwargs, num_gen):
    opts = metric_utils.MetricOptions(G=G, dataset_kwargs=dataset_kwargs, progress=False, batch=64)
    reals = torch.cat(list(metric_utils.iterate_real_images(opts)))
    extractor = metric_utils.PixelPCAFeatures(num_components=32).fit([reals])
    gen = metric_utils.collect_features(extractor, metric_utils.iterate_generated_images(opts, num_gen), 'gen', False)
    return frechet.fid_from_features(extractor(reals), gen)

@pytest.mark.slow
def test_tiny_stylegan2_learns_fashion_mnist(tmp_path, size_scale):
    num_images = int(4000 * size_scale)
    kimg = 24 * size_scale
    data = str(tmp_path / 'fashion32.zip')
    result = CliRunner().invoke(dataset_tool.main, ['--source', FASHION, '--dest', data,
        '--max-images', str(num_images), '--width', '32', '--height', '32'])
    assert result.exit_code == 0, result.output

    _desc, args = train_cli.setup_training_loop_kwargs(data=data, cfg='tiny', aug='noaug', workers=0, seed=0)
    args.pop('num_gpus')
    args.update(run_dir=str(tmp_path), total_kimg=kimg, kimg_per_tick=2, image_snapshot_ticks=1000,
        network_snapshot_ticks=1000, image_grid_max=32)
    nets = training_loop.training_loop(**args)

    torch.manual_seed(0)
    G_init = dnnlib.util.construct_class_by_name(**args.G_kwargs, c_dim=0, img_resolution=32, img_channels=1).eval()
    fid_init = _pixel_fid(G_init, args.training_set_kwargs, num_gen=500)
    fid_end = _pixel_fid(nets.G_ema, args.training_set_kwargs, num_gen=500)
    print(f'pixel-PCA FID on {num_images} Fashion-MNIST images after {kimg:g} kimg: init {fid_init:.2f} -> trained {fid_end:.2f}')
    stats = [json.loads(line) for line in open(tmp_path / 'stats.jsonl')]
    assert all(np.isfinite(s['Loss/G/loss']['mean']) and np.isfinite(s['Loss/D/loss']['mean']) for s in stats if 'Loss/G/loss' in s)
    assert fid_end < 0.5 * fid_init

#----------------------------------------------------------------------------
