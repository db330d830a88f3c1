"""scripts/build_demo_bundle.py at --size tiny on real Fashion-MNIST (the 4000-image slice in tests/data):
every step runs as a user would run it (subprocesses of the real commands), the bundle it writes
passes the safe, hashed loader, gradstyle-demo runs on it, and a second run redoes nothing.
"""

import json
import os
import subprocess
import sys

import pytest

import editing_directions as ed
from gradstyle_plugin.demo import build as B
from gradstyle_plugin.demo import bundle as db
from gradstyle_plugin.demo.fashion import load_G
from tests.conftest import FASHION_DIR, REPO

pytestmark = [pytest.mark.slow, pytest.mark.integration]

@pytest.fixture(scope='module')
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp('tiny_build')
    fashion = root / 'fashion'          # the slice stands in for both splits (the pipeline, not the split, is tested)
    fashion.mkdir()
    for split in ['train', 't10k']:
        for kind, ext in [('images', 'idx3'), ('labels', 'idx1')]:
            os.symlink(FASHION_DIR / f't10k-{kind}-{ext}-ubyte.gz', fashion / f'{split}-{kind}-{ext}-ubyte.gz')
    cmd = [sys.executable, str(REPO / 'scripts' / 'build_demo_bundle.py'), '--workdir', str(root / 'work'), '--size', 'tiny',
        '--bundle-dir', str(root / 'bundle'), '--fashion-dir', str(fashion)]
    first = subprocess.run(cmd, capture_output=True, text=True)
    second = subprocess.run(cmd, capture_output=True, text=True)
    return root, first, second

def test_every_step_runs_and_is_recorded(built):
    root, first, _second = built
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    state = json.loads((root / 'work' / 'build_state.json').read_text())
    assert state['size'] == 'tiny' and list(state['steps']) == B.STEPS
    check = state['steps']['generator-check']
    assert check['samples'] == B.SIZES['tiny'].check_samples and 0.1 <= check['mean_max_prob'] <= 1
    assert sum(check['class_counts'].values()) == check['samples']

def test_a_second_run_redoes_nothing(built):
    _root, _first, second = built
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.count('done before') == len(B.STEPS) and ': start' not in second.stdout

def test_the_bundle_loads_and_the_demo_ran_on_it(built):
    root, _first, _second = built
    b = db.load_bundle(root / 'bundle')
    assert set(db.REQUIRED_ROLES) | {'demo_summary', 'comparison'} <= set(b.roles)
    assert len(b.images()) == B.SIZES['tiny'].bundle_images
    summary = json.loads(open(b.path('demo_summary')).read())
    assert summary['num_images'] == len(b.images()) and set(summary['edits']) == set(B.ATTRIBUTES)
    assert str(root / 'work') not in json.dumps(b.provenance) and '<workdir>/' in json.dumps(b.provenance)
    # The directions are bound to the bundled network (GradStyle training leaves its generator as it was).
    G = load_G(b.path('network'), 'cpu')
    for name in B.ATTRIBUTES:
        assert ed.resolve(name, G, [b.path('directions')]).matches(G)
