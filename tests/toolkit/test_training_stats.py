"""training_stats: moments match NumPy over reports and updates."""

import numpy as np
import torch

from stylegan2_ada_pytorch.torch_utils import training_stats


def test_collector_moments_match_numpy():
    rnd = np.random.RandomState(0)
    a, b = rnd.randn(7), rnd.randn(3, 4)
    c = training_stats.Collector(regex='T1/.*')
    training_stats.report('T1/x', torch.tensor(a))
    training_stats.report('T1/x', b)
    training_stats.report('Other/y', 1.0)
    c.update()
    both = np.concatenate([a, b.ravel()])
    assert c.num('T1/x') == both.size
    assert np.isclose(c.mean('T1/x'), both.mean(), atol=1e-12)
    assert np.isclose(c.std('T1/x'), both.std(), atol=1e-12)
    assert c.names() == ['T1/x']
    assert set(c.as_dict()['T1/x']) == {'num', 'mean', 'std'}

def test_update_gives_deltas_and_keep_previous():
    c = training_stats.Collector(regex='T2/.*', keep_previous=True)
    training_stats.report('T2/v', [1.0, 3.0])
    c.update()
    assert c['T2/v'] == 2.0
    c.update()  # nothing new: previous value kept
    assert c['T2/v'] == 2.0 and c.num('T2/v') == 2
    training_stats.report('T2/v', 10.0)
    c.update()
    assert c['T2/v'] == 10.0 and c.num('T2/v') == 1
    d = training_stats.Collector(regex='T2/.*', keep_previous=False)
    d.update()
    assert d.num('T2/v') == 0 and np.isnan(d.mean('T2/v'))

def test_report0_and_empty():
    c = training_stats.Collector(regex='T3/.*')
    assert training_stats.report0('T3/z', 5.0) == 5.0
    training_stats.report('T3/z', [])
    c.update()
    assert c.num('T3/z') == 1 and c.std('T3/z') == 0
