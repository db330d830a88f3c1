"""The training loop on a tiny generator: run dir, exact resume, crash safety, NaN stop, 2 processes."""

import json
import os

import numpy as np
import PIL.Image
import pytest
import torch

from stylegan2_ada_pytorch import dnnlib, legacy
from stylegan2_ada_pytorch.testing import TINY_D_KWARGS, TINY_G_KWARGS
from stylegan2_ada_pytorch.torch_utils import training_stats
from stylegan2_ada_pytorch.training import snapshot_images, training_loop
from stylegan2_ada_pytorch.training.loss import StyleGAN2Loss

pytestmark = pytest.mark.integration

#----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def image_folder(tmp_path_factory):
    """16 seeded 32x32 RGB PNGs with smooth structure (not pure noise)."""
    root = tmp_path_factory.mktemp('images')
    rnd = np.random.RandomState(1)
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    for i in range(16):
        base = np.stack([np.sin(xx * rnd.uniform(1, 6) + rnd.uniform(0, 6)), yy, xx * yy], axis=2)
        img = ((base - base.min()) / (np.ptp(base) + 1e-8) * 255).astype(np.uint8)
        PIL.Image.fromarray(img).save(root / f'img{i:02d}.png')
    return str(root)

def _kwargs(data, run_dir, **overrides):
    strip = ('c_dim', 'img_resolution', 'img_channels')
    G_kwargs = dnnlib.EasyDict(class_name='stylegan2_ada_pytorch.networks.Generator', **{k: v for k, v in TINY_G_KWARGS.items() if k not in strip})
    D_kwargs = dnnlib.EasyDict(class_name='stylegan2_ada_pytorch.networks.Discriminator', **{k: v for k, v in TINY_D_KWARGS.items() if k not in strip})
    opt = dnnlib.EasyDict(class_name='torch.optim.Adam', lr=0.002, betas=[0, 0.99], eps=1e-8)
    kwargs = dnnlib.EasyDict(run_dir=run_dir, G_kwargs=G_kwargs, D_kwargs=D_kwargs, G_opt_kwargs=opt, D_opt_kwargs=opt,
        training_set_kwargs=dnnlib.EasyDict(class_name='stylegan2_ada_pytorch.training.dataset.ImageFolderDataset', path=data),
        loss_kwargs=dnnlib.EasyDict(class_name='stylegan2_ada_pytorch.training.loss.StyleGAN2Loss', r1_gamma=1.0),
        augment_kwargs=dnnlib.EasyDict(class_name='stylegan2_ada_pytorch.training.augment.AugmentPipe', xflip=1, rotate90=1, xint=1, brightness=1, contrast=1),
        augment_p=0.2, ada_target=0.6, ada_interval=2, ada_kimg=0.1,
        batch_size=4, batch_gpu=2, G_reg_interval=2, D_reg_interval=3, total_kimg=0.016, kimg_per_tick=0.008,
        image_snapshot_ticks=1, network_snapshot_ticks=1, image_grid_max=8, ema_kimg=0.01, ema_rampup=0.5)
    kwargs.update(overrides)
    return kwargs

def _snapshots(run_dir):
    return sorted(f for f in os.listdir(run_dir) if f.startswith('network-snapshot-'))

def _load(path):
    with open(path, 'rb') as f:
        return legacy.load_network_pkl(f)

#----------------------------------------------------------------------------

def test_run_dir_files_and_finite_losses(image_folder, tmp_path):
    run_dir = str(tmp_path)
    training_loop.training_loop(**_kwargs(image_folder, run_dir))
    files = set(os.listdir(run_dir))
    assert {'reals.png', 'fakes_init.png', 'fakes000000.png', 'stats.jsonl', 'network-snapshot-000000.pkl'} <= files
    assert not [f for f in files if '.tmp' in f]
    lines = [json.loads(line) for line in open(os.path.join(run_dir, 'stats.jsonl'))]
    assert len(lines) >= 2
    for key in ['Loss/G/loss', 'Loss/D/loss', 'Loss/r1_penalty', 'Loss/pl_penalty', 'Progress/kimg', 'Timing/Gmain']:
        assert any(key in line for line in lines), key
        for line in lines:
            if key in line:
                assert set(line[key]) == {'num', 'mean', 'std'} and np.isfinite(line[key]['mean']), (key, line[key])
    grid = PIL.Image.open(os.path.join(run_dir, 'fakes000000.png'))
    gw, gh = snapshot_images.grid_shape(32, max_images=8)
    assert grid.size == (gw * 32, gh * 32) and 4 <= gw * gh <= 8
    data = _load(os.path.join(run_dir, 'network-snapshot-000000.pkl'))
    assert data['training_state']['cur_nimg'] == 16
    assert data['training_set_kwargs']['path'] == image_folder
    assert isinstance(data['augment_pipe'], torch.nn.Module)

def test_resume_matches_uninterrupted(image_folder, tmp_path):
    full_dir, a_dir, b_dir = (str(tmp_path / n) for n in ('full', 'a', 'b'))
    for d in (full_dir, a_dir, b_dir):
        os.makedirs(d)
    full = training_loop.training_loop(**_kwargs(image_folder, full_dir, total_kimg=0.024))
    training_loop.training_loop(**_kwargs(image_folder, a_dir, total_kimg=0.012))
    [snap] = _snapshots(a_dir)
    state = _load(os.path.join(a_dir, snap))['training_state']
    assert state['cur_nimg'] == 12 and state['batch_idx'] == 3
    resumed = training_loop.training_loop(**_kwargs(image_folder, b_dir, total_kimg=0.024, resume_pkl=os.path.join(a_dir, snap)))
    for name in ['G', 'D', 'G_ema']:
        for (n1, t1), (n2, t2) in zip(full[name].state_dict().items(), resumed[name].state_dict().items()):
            assert n1 == n2
            assert torch.equal(t1, t2), f'{name}.{n1} differs after resume (max diff {(t1 - t2).abs().max():.3g})'
    assert torch.equal(full.augment_pipe.p, resumed.augment_pipe.p)
    # Resuming from a pickle without training_state (NVIDIA's) still works: weights only, kimg from 0.
    c_dir = str(tmp_path / 'c')
    os.makedirs(c_dir)
    data = _load(os.path.join(a_dir, snap))
    del data['training_state']
    legacy.save_network_pkl(data, os.path.join(c_dir, 'plain.pkl'))
    nets = training_loop.training_loop(**_kwargs(image_folder, c_dir, total_kimg=0.004, resume_pkl=os.path.join(c_dir, 'plain.pkl')))
    assert nets.G is not None and _load(os.path.join(c_dir, 'network-snapshot-000000.pkl'))['training_state']['cur_nimg'] == 4

def test_crash_while_writing_snapshot_keeps_previous(image_folder, tmp_path, monkeypatch):
    run_dir = str(tmp_path)
    training_loop.training_loop(**_kwargs(image_folder, run_dir, total_kimg=0.004))
    path = os.path.join(run_dir, 'network-snapshot-000000.pkl')
    before = open(path, 'rb').read()
    from stylegan2_ada_pytorch.torch_utils import persistence
    real_dump = persistence.dump
    def crashing_dump(obj, file, **kwargs):
        file.write(b'\x80\x04partial snapshot bytes')  # what a killed process leaves behind
        raise KeyboardInterrupt('simulated kill during snapshot')
    monkeypatch.setattr(persistence, 'dump', crashing_dump)
    with pytest.raises(KeyboardInterrupt):
        training_loop.training_loop(**_kwargs(image_folder, run_dir, total_kimg=0.004, resume_pkl=path))
    monkeypatch.setattr(persistence, 'dump', real_dump)
    assert open(path, 'rb').read() == before
    assert _load(path)['G'] is not None
    assert [f for f in os.listdir(run_dir) if f.startswith('network-snapshot')] == ['network-snapshot-000000.pkl']

class _NaNLoss(StyleGAN2Loss):
    """Makes the D loss NaN from its second call on (a diverging run)."""
    calls = 0
    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain):
        type(self).calls += 1
        if phase == 'Dmain' and type(self).calls > 6:
            real_img = real_img * float('nan')
        super().accumulate_gradients(phase, real_img, real_c, gen_z, gen_c, sync, gain)

def test_nan_stops_with_message_and_snapshot_intact(image_folder, tmp_path):
    run_dir = str(tmp_path)
    kwargs = _kwargs(image_folder, run_dir, total_kimg=0.040)
    kwargs.loss_kwargs.class_name = f'{__name__}._NaNLoss'
    with pytest.raises(training_loop.TrainingError, match='non-finite loss or gradient in phase D'):
        training_loop.training_loop(**kwargs)
    snaps = _snapshots(run_dir)
    assert snaps == ['network-snapshot-000000.pkl']
    G = _load(os.path.join(run_dir, snaps[0]))['G']
    assert all(torch.isfinite(p).all() for p in G.parameters())

#----------------------------------------------------------------------------

def _two_process_worker(rank, kwargs, init_file, out_dir):
    torch.distributed.init_process_group(backend='gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    training_stats.init_multiprocessing(rank=rank, sync_device=torch.device('cpu'))
    try:
        nets = training_loop.training_loop(rank=rank, num_gpus=2, **kwargs)
        torch.save({k: v for k, v in nets.G.state_dict().items()}, os.path.join(out_dir, f'G{rank}.pt'))
        torch.save({k: v for k, v in nets.D.state_dict().items()}, os.path.join(out_dir, f'D{rank}.pt'))
    finally:
        torch.distributed.destroy_process_group()

def test_two_processes_gloo_keep_identical_weights(image_folder, tmp_path):
    run_dir = str(tmp_path / 'run')
    os.makedirs(run_dir)
    kwargs = _kwargs(image_folder, run_dir, total_kimg=0.016, batch_size=8, batch_gpu=2, augment_kwargs=None)
    init_file = str(tmp_path / '.dist_init')
    torch.multiprocessing.spawn(_two_process_worker, args=(kwargs, init_file, str(tmp_path)), nprocs=2)
    G = [torch.load(tmp_path / f'G{r}.pt', weights_only=True) for r in range(2)]
    D = [torch.load(tmp_path / f'D{r}.pt', weights_only=True) for r in range(2)]
    torch.manual_seed(0)  # what rank 0 builds (seed 0 * 2 processes + rank 0) before training
    start = dnnlib.util.construct_class_by_name(**kwargs.G_kwargs, c_dim=0, img_resolution=32, img_channels=3)
    for name in G[0]:
        if name.endswith('w_avg'):
            continue  # each rank tracks w_avg from its own batch (as in the toolkit)
        assert torch.equal(G[0][name], G[1][name]), name
    for name in D[0]:
        assert torch.equal(D[0][name], D[1][name]), name
    changed = any(not torch.equal(G[0][n], t) for n, t in start.state_dict().items() if not n.endswith('w_avg'))
    assert changed, 'training did not change G'

#----------------------------------------------------------------------------
