"""The injector entry-point registry, and its role in the safe loader's class allow-list."""

import importlib.metadata
import sys
import textwrap
import types

import pytest
import torch

from stylegan2_ada_pytorch import legacy, registry, testing
from stylegan2_ada_pytorch.torch_utils.persistence import UnsafePickleError

#----------------------------------------------------------------------------

class FakeEntryPoint:
    """What importlib.metadata gives: name, value, group, dist.name, load() (which we count)."""
    loads = []

    def __init__(self, name, value, dist):
        self.name, self.value, self.group = name, value, registry.GROUP
        self.dist = types.SimpleNamespace(name=dist)

    def load(self):
        FakeEntryPoint.loads.append(self.name)
        return importlib.metadata.EntryPoint(self.name, self.value, self.group).load()

@pytest.fixture
def fake_entry_points(monkeypatch):
    def install(*triples):
        eps = [FakeEntryPoint(*t) for t in triples]
        monkeypatch.setattr(registry, '_entry_points', lambda: eps)
        FakeEntryPoint.loads.clear()
        return eps
    return install

#----------------------------------------------------------------------------

def test_real_metadata_query_works():
    entries = registry.list_injectors()
    assert isinstance(entries, dict)
    assert all(ep.group == registry.GROUP for ep in entries.values())

def test_list_imports_nothing(fake_entry_points):
    fake_entry_points(('zero', 'stylegan2_ada_pytorch.testing:ZeroConvInjector', 'gradstyle'),
        ('broken', 'no_such_module_xyz:Thing', 'otherdist'))
    entries = registry.list_injectors()
    assert sorted(entries) == ['broken', 'zero'] and FakeEntryPoint.loads == []
    assert 'no_such_module_xyz' not in sys.modules

def test_load_and_class_name(fake_entry_points):
    fake_entry_points(('zero', 'stylegan2_ada_pytorch.testing:ZeroConvInjector', 'gradstyle'))
    assert registry.load_injector('zero') is testing.ZeroConvInjector and FakeEntryPoint.loads == ['zero']
    assert registry.injector_class_name('zero') == 'stylegan2_ada_pytorch.testing.ZeroConvInjector'

def test_duplicate_names_raise_naming_both(fake_entry_points):
    fake_entry_points(('grm', 'pkg_a.grm:GRM', 'dist-a'), ('grm', 'pkg_b.grm:GRM', 'dist-b'))
    with pytest.raises(registry.RegistryError, match=r"'grm' is declared twice: by dist-a \(pkg_a.grm:GRM\) and by dist-b \(pkg_b.grm:GRM\)"):
        registry.list_injectors()

def test_unknown_name_lists_known(fake_entry_points):
    fake_entry_points(('zero', 'stylegan2_ada_pytorch.testing:ZeroConvInjector', 'gradstyle'), ('gam', 'x:Y', 'gradstyle'))
    with pytest.raises(registry.RegistryError, match="unknown injector 'grm'; known injectors: gam, zero"):
        registry.load_injector('grm')

def test_import_failure_names_distribution(fake_entry_points):
    fake_entry_points(('broken', 'no_such_module_xyz:Thing', 'otherdist'))
    with pytest.raises(registry.RegistryError, match="injector 'broken' from distribution otherdist failed to import no_such_module_xyz:Thing: ModuleNotFoundError"):
        registry.load_injector('broken')

def test_malformed_value(fake_entry_points):
    fake_entry_points(('bad', 'just_a_module', 'otherdist'))
    with pytest.raises(registry.RegistryError, match='must have the form "module:Class"'):
        registry.injector_class_name('bad')

#----------------------------------------------------------------------------
# Entry-point classes are allowed by the safe loader; the same class undeclared is refused.

def test_entry_point_classes_join_the_allow_list(tmp_path, monkeypatch, fake_entry_points):
    (tmp_path / 'thirdparty_injector_xyz.py').write_text(textwrap.dedent('''
        import torch
        from stylegan2_ada_pytorch.torch_utils import persistence

        @persistence.persistent_class
        class ScaleInjector(torch.nn.Module):
            def __init__(self, gain):
                super().__init__()
                self.gain = torch.nn.Parameter(torch.tensor(float(gain)))
            def forward(self, x, img, *, stage, ws, **inject_kwargs):
                return x * self.gain.to(x.dtype), img
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = dict(class_name='thirdparty_injector_xyz.ScaleInjector', gain=1.5)
    G = testing.tiny_generator(synthesis_kwargs=dict(injector_kwargs={'b8': [spec]}))
    legacy.save_network_pkl(dict(G=G, D=testing.tiny_discriminator(), G_ema=G), tmp_path / 'net.pkl')

    fake_entry_points()
    with pytest.raises(UnsafePickleError, match="refusing class_name 'thirdparty_injector_xyz.ScaleInjector'"):
        legacy.load_network_pkl(str(tmp_path / 'net.pkl'))
    fake_entry_points(('scale', 'thirdparty_injector_xyz:ScaleInjector', 'thirdparty'))
    out = legacy.load_network_pkl(str(tmp_path / 'net.pkl'))['G_ema']
    z = torch.randn([2, 32], generator=torch.Generator().manual_seed(0))
    assert torch.equal(out(z, None, noise_mode='const'), G(z, None, noise_mode='const'))
    assert out.synthesis.injectors.b8[0].gain.item() == 1.5

#----------------------------------------------------------------------------
