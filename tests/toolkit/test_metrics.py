"""Metrics: FID and KID formulas against independent computations; pixel metrics end to end."""

import numpy as np
import PIL.Image
import pytest
import torch

from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch.metrics import frechet, kernel, metric_main
from stylegan2_ada_pytorch.testing import tiny_generator

#----------------------------------------------------------------------------

def test_frechet_distance_closed_form_for_diagonal_covariances():
    rnd = np.random.RandomState(0)
    mu1, mu2 = rnd.randn(5), rnd.randn(5)
    v1, v2 = rnd.uniform(0.5, 2, 5), rnd.uniform(0.5, 2, 5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    got = frechet.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(expected, rel=1e-9)

def test_frechet_distance_general_via_eigendecomposition():
    rnd = np.random.RandomState(1)
    a, b = rnd.randn(6, 6), rnd.randn(6, 6)
    s1, s2 = a @ a.T + np.eye(6), b @ b.T + np.eye(6)
    mu1, mu2 = rnd.randn(6), rnd.randn(6)
    # Tr((S1 S2)^1/2) = sum of sqrt of eigenvalues of S1^1/2 S2 S1^1/2 (symmetric, independent route).
    w, v = np.linalg.eigh(s1)
    r1 = v @ np.diag(np.sqrt(w)) @ v.T
    tr_root = np.sum(np.sqrt(np.linalg.eigvalsh(r1 @ s2 @ r1)))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_root
    assert frechet.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)

def test_kid_matches_brute_force():
    rnd = np.random.RandomState(2)
    x, y = rnd.randn(12, 4), rnd.randn(12, 4) + 0.5
    k = lambda a, b: (a @ b / 4 + 1) ** 3
    m = 12
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    # With subsets the size of the sets, every subset is the whole set (in some order).
    assert kernel.kid_from_features(y, x, num_subsets=3, max_subset_size=m) == pytest.approx(xx + yy - 2 * xy, rel=1e-9)

#----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp('metric_images')
    rnd = np.random.RandomState(3)
    for i in range(40):
        img = np.clip(rnd.randint(0, 255, size=3) + rnd.randn(32, 32, 3) * 20, 0, 255).astype(np.uint8)
        PIL.Image.fromarray(img).save(root / f'{i:03d}.png')
    return str(root)

def test_pixel_fid_orders_generators(folder, monkeypatch):
    dataset_kwargs = dnnlib.EasyDict(class_name='stylegan2_ada_pytorch.training.dataset.ImageFolderDataset', path=folder)
    # A "generator" that returns real images scores far better than a random tiny G.
    reals = torch.from_numpy(np.stack([np.asarray(PIL.Image.open(f'{folder}/{i:03d}.png')) for i in range(40)])).permute(0, 3, 1, 2)
    class Replay(torch.nn.Module):
        z_dim, c_dim = 4, 0
        def forward(self, z, c, noise_mode='const'):
            idx = torch.randint(0, 40, [z.shape[0]])
            return reals[idx].to(torch.float32) / 127.5 - 1
    def fid200_pix(opts):  # fid2k_pix at a test size
        real, gen = metric_main._pixel_features(opts, num_gen=200, max_real=40)
        return dict(fid200_pix=metric_main.frechet.fid_from_features(real, gen))
    monkeypatch.setitem(metric_main._metric_dict, 'fid200_pix', fid200_pix)
    good = metric_main.calc_metric('fid200_pix', G=Replay(), dataset_kwargs=dataset_kwargs, progress=False)
    bad = metric_main.calc_metric('fid200_pix', G=tiny_generator(), dataset_kwargs=dataset_kwargs, progress=False)
    assert good.results.fid200_pix < 0.1 * bad.results.fid200_pix, (good.results, bad.results)
    assert set(good) == {'results', 'metric', 'total_time', 'total_time_str', 'num_gpus'}

def test_report_metric_writes_jsonl(tmp_path):
    result = dnnlib.EasyDict(results=dnnlib.EasyDict(fid2k_pix=1.5), metric='fid2k_pix', total_time=1.0, total_time_str='1s', num_gpus=1)
    metric_main.report_metric(result, run_dir=str(tmp_path), snapshot_pkl=str(tmp_path / 'network-snapshot-000004.pkl'))
    import json
    line = json.loads((tmp_path / 'metric-fid2k_pix.jsonl').read_text())
    assert line['snapshot_pkl'] == 'network-snapshot-000004.pkl' and line['results'] == {'fid2k_pix': 1.5}

def test_inception_metrics_need_local_weights():
    with pytest.raises(dnnlib.UserError, match='--inception-weights'):
        metric_main.calc_metric('fid50k_full', G=tiny_generator(), dataset_kwargs={})
    with pytest.raises(dnnlib.UserError, match='unknown metric'):
        metric_main.calc_metric('fid_nope')

#----------------------------------------------------------------------------
