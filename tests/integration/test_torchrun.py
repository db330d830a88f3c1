"""Both training CLIs under torchrun (env:// rendezvous, gloo on CPU): one run directory written by
rank 0, and every process holds bit-identical weights at the snapshot (the per-rank sha256 digests
the loop records in training_state.param_digests, compared here)."""

import os
import shutil
import subprocess

import numpy as np
import PIL.Image
import pytest

from stylegan2_ada_pytorch import legacy
from .._tiny_pickles import write_tiny_generator_and_encoder

pytestmark = [pytest.mark.integration, pytest.mark.skipif(shutil.which('torchrun') is None, reason='torchrun not on PATH')]

def _images(folder, count=16):
    folder.mkdir()
    rnd = np.random.RandomState(0)
    for i in range(count):
        img = (rnd.rand(32, 32, 3) * 255).astype(np.uint8)
        img[8:24, 8:24] = rnd.randint(0, 255, size=3)                  # a square of one colour on noise
        PIL.Image.fromarray(img).save(folder / f'{i:02d}.png')
    return str(folder)

def _torchrun(module, args, cwd):
    cmd = ['torchrun', '--standalone', '--nproc_per_node', '2', '-m', module] + [str(a) for a in args]
    env = dict(os.environ, OMP_NUM_THREADS='1')
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result

def _one_snapshot(outdir):
    [run] = os.listdir(outdir)                                          # rank 0 alone made the run directory
    snaps = sorted(f for f in os.listdir(os.path.join(outdir, run)) if f.startswith('network-snapshot-'))
    with open(os.path.join(outdir, run, snaps[-1]), 'rb') as f:
        return legacy.load_network_pkl(f), os.listdir(os.path.join(outdir, run))

def _assert_identical_ranks(data):
    digests = data['training_state']['param_digests']
    assert len(digests) == 2 and digests[0] and digests[0] == digests[1], digests

def test_stylegan2_train_under_torchrun(tmp_path):
    data = _images(tmp_path / 'data')
    _torchrun('stylegan2_ada_pytorch.cli.train', ['--outdir', tmp_path / 'runs', '--data', data, '--cfg', 'tiny', '--kimg', 1,
        '--batch', 8, '--snap', 1, '--metrics', 'none', '--aug', 'noaug', '--workers', 0], tmp_path)
    snap, files = _one_snapshot(tmp_path / 'runs')
    assert {'training_options.json', 'log.txt'} <= set(files)
    _assert_identical_ranks(snap)
    assert len(snap['training_state']['rng']) == 2

def test_gradstyle_train_under_torchrun(tmp_path):
    data = _images(tmp_path / 'data')
    write_tiny_generator_and_encoder(str(tmp_path))
    _torchrun('gradstyle_plugin.cli.train', ['--network', tmp_path / 'G.pkl', '--encoder', tmp_path / 'encoder.pkl',
        '--data', data, '--outdir', tmp_path / 'runs', '--preset', 'tiny', '--batch', 4, '--kimg', 0.008, '--snap', 1,
        '--workers', 0, '--lpips-weights', 'random', '--force'], tmp_path)   # untrained encoder: no pairing check
    snap, _files = _one_snapshot(tmp_path / 'runs')
    _assert_identical_ranks(snap)
    assert snap['training_state']['cur_nimg'] == 8
