"""The useful alpha range of a direction (report.alpha_range) and its record in the registry (update_direction_info)."""

import json

import pytest
import torch

import editing_directions as ed
from gradstyle_plugin.eval.report import alpha_range

def _summary(ids):
    return dict(alphas=list(ids), per_alpha={str(a): dict(id=v) for a, v in ids.items()})

@pytest.mark.parametrize('ids, floor, expected', [
    ({-3.0: 0.4, -1.5: 0.7, 0.0: 0.9, 1.5: 0.6, 3.0: 0.55}, 0.5, [-1.5, 3.0]),
    ({-3.0: 0.6, -1.5: 0.4, 0.0: 0.9, 1.5: 0.6, 3.0: 0.3}, 0.5, [0.0, 1.5]),   # stops at the first failure outwards
    ({-2.0: 0.1, 2.0: 0.2}, 0.5, None),
    ({-2.0: 0.9, 2.0: None}, 0.5, [-2.0, 0.0]),                                  # an unscored mean is not "useful"
])
def test_alpha_range(ids, floor, expected):
    assert alpha_range(_summary(ids), floor) == expected

def test_update_direction_info(tmp_path):
    d = ed.Direction('smile', 'interfacegan', torch.ones(1, 4), fingerprint='f' * 64, generator='g', info={'accuracy': 0.9})
    ed.save_directions([d], tmp_path, 'toy')
    [found] = ed.find_directions('smile', [tmp_path])
    path = ed.update_direction_info(found, {'useful_alpha_range': [-2.0, 3.0]}, [tmp_path])
    entry = json.load(open(path))['directions']['smile']
    assert entry['info'] == {'accuracy': 0.9, 'useful_alpha_range': [-2.0, 3.0]} and entry['default_alpha'] == 3.0
    other = ed.Direction('smile', 'interfacegan', torch.ones(1, 4), fingerprint='0' * 64, group=found.group)
    with pytest.raises(ed.DirectionError, match='is not in the registries'):
        ed.update_direction_info(other, {'x': 1}, [tmp_path])
