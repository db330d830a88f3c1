"""The training commands as a user types them: installed console scripts, default `--workers` (3 forked
DataLoader workers reading the same zip as the parent), a zip dataset made by stylegan2-dataset from
real Fashion-MNIST idx files (tests/data). Each must exit 0 and leave a snapshot that loads."""

import os
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest

from stylegan2_ada_pytorch import legacy

from ..conftest import FASHION_DIR
from .._tiny_pickles import write_tiny_generator_and_encoder

pytestmark = pytest.mark.integration

def _script(name):
    path = os.path.join(os.path.dirname(sys.executable), name)   # the console script pip installed beside python
    assert os.path.isfile(path), f'{name} is not installed beside {sys.executable} (pip install -e .)'
    return path

def _run(name, *args, cwd):
    result = subprocess.run([_script(name)] + [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result

def _snapshots(outdir):
    [run] = os.listdir(outdir)
    run = os.path.join(outdir, run)
    return [os.path.join(run, f) for f in sorted(os.listdir(run)) if f.startswith('network-snapshot-')]

def test_issue_commands_with_default_workers(tmp_path):
    # The two commands of the bug report, verbatim apart from the source path.
    _run('stylegan2-dataset', '--source', FASHION_DIR / 't10k-images-idx3-ubyte.gz', '--dest', 'fm.zip',
         '--max-images', 512, '--width', 32, '--height', 32, cwd=tmp_path)
    _run('stylegan2-train', '--outdir', 'runs', '--data', 'fm.zip', '--gpus', 1, '--cfg', 'tiny', '--kimg', 1,
         '--snap', 1, '--batch', 16, cwd=tmp_path)
    snaps = _snapshots(tmp_path / 'runs')
    assert [os.path.basename(s) for s in snaps] == ['network-snapshot-000000.pkl', 'network-snapshot-000001.pkl']
    with open(snaps[-1], 'rb') as f:
        data = legacy.load_network_pkl(f)
    assert data['training_state']['cur_nimg'] >= 1000 and data['G_ema'].img_channels == 1

def test_gradstyle_train_with_default_workers_on_a_zip(tmp_path):
    folder = tmp_path / 'photos'
    folder.mkdir()
    rnd = np.random.RandomState(0)
    for i in range(24):
        PIL.Image.fromarray((rnd.rand(32, 32, 3) * 255).astype(np.uint8)).save(folder / f'{i:02d}.png')
    _run('stylegan2-dataset', '--source', folder, '--dest', 'photos.zip', cwd=tmp_path)
    write_tiny_generator_and_encoder(str(tmp_path))
    _run('gradstyle-train', '--network', 'G.pkl', '--encoder', 'encoder.pkl', '--data', 'photos.zip', '--outdir', 'runs',
         '--preset', 'tiny', '--batch', 4, '--kimg', 0.016, '--snap', 1, '--lpips-weights', 'random', '--force', cwd=tmp_path)
    snaps = _snapshots(tmp_path / 'runs')
    with open(snaps[-1], 'rb') as f:
        data = legacy.load_network_pkl(f)
    assert data['training_state']['cur_nimg'] == 16
