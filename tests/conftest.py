"""Shared fixtures and marker gating.

Markers (declared in pyproject.toml, enforced with --strict-markers):
- `integration`: tiny end-to-end runs; always run.
- `slow`: long end-to-end tests. They always run, at a trimmed size by default (what CI does);
  `--full-size` or RUN_SLOW=1 runs them at full size. Tests read the size from `size_scale`.
- `gpu`: needs a CUDA device; skipped without one.
- `cuda_build`: compiles CUDA sources with nvcc; skipped if nvcc is absent.
"""

import importlib.metadata
import os
import shutil
import types
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / 'shared'        # source of truth for review; the tests read their copies in DATA
DATA = REPO / 'tests' / 'data'
FASHION_DIR = DATA / 'fashion-mnist'   # the first 4000 Fashion-MNIST t10k images and labels (tests/data/README.md)

#----------------------------------------------------------------------------

def pytest_addoption(parser):
    parser.addoption('--full-size', action='store_true', default=False, help='run slow tests at full size')

def _full_size(config):
    return config.getoption('--full-size') or os.environ.get('RUN_SLOW', '') not in ('', '0')

def _have_nvcc():
    if shutil.which('nvcc'):
        return True
    cuda_home = os.environ.get('CUDA_HOME') or os.environ.get('CUDA_PATH') or '/usr/local/cuda'
    return os.path.isfile(os.path.join(cuda_home, 'bin', 'nvcc'))

def pytest_collection_modifyitems(config, items):
    no_gpu = pytest.mark.skip(reason='needs a CUDA device (none here)')
    no_nvcc = pytest.mark.skip(reason='nvcc not found (set CUDA_HOME or put nvcc on PATH)')
    gpu = torch.cuda.is_available()
    nvcc = _have_nvcc()
    for item in items:
        if 'gpu' in item.keywords and not gpu:
            item.add_marker(no_gpu)
        if 'cuda_build' in item.keywords and not nvcc:
            item.add_marker(no_nvcc)

#----------------------------------------------------------------------------

@pytest.fixture(scope='session')
def size_scale(request):
    """1.0 at full size (--full-size or RUN_SLOW=1); a small fraction otherwise (CI)."""
    return 1.0 if _full_size(request.config) else 0.25

@pytest.fixture(scope='session')
def spec_dir():
    """Key lists from shared/spec, copied into tests/data/spec."""
    return DATA / 'spec'

@pytest.fixture(scope='session')
def fixtures_dir():
    """Real data files from shared/fixtures (e4e's directions, photos), copied into tests/data/fixtures."""
    return DATA / 'fixtures'

@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield

#----------------------------------------------------------------------------
# Entry points: tests declare plugin classes themselves (nothing test-only is published).

class FakeEntryPoint:
    """What importlib.metadata gives: name, value, group, dist.name, load() (which is counted)."""
    loads = []

    def __init__(self, name, value, dist, group=None):
        from stylegan2_ada_pytorch import registry
        self.name, self.value, self.group = name, value, group or registry.INJECTORS_GROUP
        self.dist = types.SimpleNamespace(name=dist)

    def load(self):
        FakeEntryPoint.loads.append(self.name)
        return importlib.metadata.EntryPoint(self.name, self.value, self.group).load()

@pytest.fixture
def fake_entry_points(monkeypatch):
    """Replace the registry's entry points: `install((name, 'module:Class', dist[, group]), ..., keep_installed=False)`.

    The group defaults to the injector group. With keep_installed=True the fakes are added to the
    installed ones (e.g. to register the toolkit's example `zero_conv` injector next to GradStyle's).
    """
    from stylegan2_ada_pytorch import registry
    real = registry._entry_points
    def install(*entries, keep_installed=False):
        eps = [FakeEntryPoint(*e) for e in entries]
        def query(group):
            return (list(real(group)) if keep_installed else []) + [ep for ep in eps if ep.group == group]
        monkeypatch.setattr(registry, '_entry_points', query)
        FakeEntryPoint.loads.clear()
        return eps
    return install

ZERO_CONV_ENTRY = ('zero_conv', 'stylegan2_ada_pytorch.testing:ZeroConvInjector', 'gradstyle-tests')

#----------------------------------------------------------------------------
