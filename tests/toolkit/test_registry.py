"""The injector entry-point registry, and its role in the safe loader's class allow-list."""

import sys
import textwrap

import pytest
import torch

from stylegan2_ada_pytorch import legacy, registry, testing
from stylegan2_ada_pytorch.torch_utils.persistence import UnsafePickleError

from ..conftest import ZERO_CONV_ENTRY, FakeEntryPoint

#----------------------------------------------------------------------------

#----------------------------------------------------------------------------

def test_real_metadata_query_works():
    entries = registry.list_injectors()
    assert isinstance(entries, dict)
    assert all(ep.group == registry.INJECTORS_GROUP for ep in entries.values())
    assert all(ep.group == registry.PERSISTENT_CLASSES_GROUP for ep in registry.list_persistent_classes().values())

def test_toolkit_publishes_no_test_classes():
    # The example injector is for tests; they declare it themselves (ZERO_CONV_ENTRY).
    published = {ep.value for group in registry.GROUPS for ep in registry._entry_points(group)}
    assert not any(value.startswith('stylegan2_ada_pytorch.') for value in published), published

def test_zero_conv_registered_by_a_test(fake_entry_points):
    fake_entry_points(ZERO_CONV_ENTRY, keep_installed=True)
    assert registry.injector_class_name('zero_conv') == 'stylegan2_ada_pytorch.testing.ZeroConvInjector'
    assert registry.load_injector('zero_conv') is testing.ZeroConvInjector

def test_persistent_class_group(fake_entry_points):
    fake_entry_points(('enc', 'stylegan2_ada_pytorch.testing:ZeroConvInjector', 'dist-a', registry.PERSISTENT_CLASSES_GROUP),
        ('enc', 'pkg_b:Enc', 'dist-b', registry.INJECTORS_GROUP))     # same name in the other group: no clash
    assert list(registry.list_persistent_classes()) == ['enc'] and FakeEntryPoint.loads == []
    assert registry.persistent_class_name('enc') == 'stylegan2_ada_pytorch.testing.ZeroConvInjector'
    assert registry.load_persistent_class('enc') is testing.ZeroConvInjector
    assert registry.declared_class_names() == {'stylegan2_ada_pytorch.testing.ZeroConvInjector', 'pkg_b.Enc'}
    with pytest.raises(registry.RegistryError, match="unknown persistent class 'x'; known persistent classes: enc"):
        registry.load_persistent_class('x')

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
    with pytest.raises(registry.RegistryError, match=r"'grm' is declared twice in \"stylegan2_ada_pytorch.injectors\": by dist-a \(pkg_a.grm:GRM\) and by dist-b \(pkg_b.grm:GRM\)"):
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

#----------------------------------------------------------------------------
# Plugins on equal terms: no package is privileged; a third-party distribution's own metadata is enough.

_ACME_ENCODER = '''
import torch
from stylegan2_ada_pytorch.torch_utils import persistence

@persistence.persistent_class
class TinyEncoder(torch.nn.Module):
    """Image [N, 3, 32, 32] -> W+ [N, num_ws, w_dim], like an e4e encoder, tiny."""
    def __init__(self, num_ws, w_dim):
        super().__init__()
        self.num_ws, self.w_dim = num_ws, w_dim
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=4, padding=1)
        self.fc = torch.nn.Linear(4 * 8 * 8, num_ws * w_dim)
        self.register_buffer('latent_avg', torch.zeros([w_dim]))
    def forward(self, img):
        x = torch.nn.functional.leaky_relu(self.conv(img), 0.2).flatten(1)
        return self.fc(x).reshape(-1, self.num_ws, self.w_dim) + self.latent_avg
'''

_ACME_INJECTOR = '''
import torch
from stylegan2_ada_pytorch import injection
from stylegan2_ada_pytorch.torch_utils import persistence

@persistence.persistent_class
class Tint(injection.Injector):
    def __init__(self, channels):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros([channels]))
    def forward(self, x, img, *, stage, ws, **inject_kwargs):
        return (x.float() * (1 + self.weight.reshape(1, -1, 1, 1))).to(x.dtype), img
'''

def _write_acme_distribution(code_dir, meta_dir):
    (code_dir / 'acme_plugin_xyz').mkdir()
    (code_dir / 'acme_plugin_xyz' / '__init__.py').write_text('')
    (code_dir / 'acme_plugin_xyz' / 'encoder.py').write_text(_ACME_ENCODER)
    (code_dir / 'acme_plugin_xyz' / 'inject.py').write_text(_ACME_INJECTOR)
    dist_info = meta_dir / 'acme_plugin-0.1.dist-info'
    dist_info.mkdir(parents=True)
    (dist_info / 'METADATA').write_text('Metadata-Version: 2.1\nName: acme-plugin\nVersion: 0.1\n')
    (dist_info / 'entry_points.txt').write_text(
        f'[{registry.INJECTORS_GROUP}]\nacme_tint = acme_plugin_xyz.inject:Tint\n\n'
        f'[{registry.PERSISTENT_CLASSES_GROUP}]\nacme_tiny_encoder = acme_plugin_xyz.encoder:TinyEncoder\n')

def test_third_party_plugin_saves_and_loads_its_encoder(tmp_path, monkeypatch):
    code_dir, meta_dir = tmp_path / 'code', tmp_path / 'meta'
    code_dir.mkdir()
    _write_acme_distribution(code_dir, meta_dir)
    monkeypatch.syspath_prepend(str(code_dir))                  # importable, but not yet installed
    from acme_plugin_xyz.encoder import TinyEncoder
    G = testing.tiny_generator(synthesis_kwargs=dict(injector_kwargs={'b16': [dict(class_name='acme_plugin_xyz.inject.Tint', channels=16)]}))
    torch.manual_seed(1)
    E = TinyEncoder(num_ws=G.num_ws, w_dim=G.w_dim).eval().requires_grad_(False)
    with torch.no_grad():
        G.synthesis.injectors.b16[0].weight.normal_()
    path = tmp_path / 'snapshot.pkl'
    legacy.save_network_pkl(dict(G=G, D=testing.tiny_discriminator(), G_ema=G, encoder=E), path)

    with pytest.raises(UnsafePickleError, match="acme_plugin_xyz.inject.Tint.*stylegan2_ada_pytorch.persistent_classes"):
        legacy.load_network_pkl(str(path))                      # no metadata: nothing of the plugin is trusted
    plain = testing.tiny_generator()
    legacy.save_network_pkl(dict(G=plain, D=None, G_ema=plain, encoder=E), tmp_path / 'encoder_only.pkl')
    with pytest.raises(UnsafePickleError, match="unknown persistent class 'TinyEncoder'.*stylegan2_ada_pytorch.persistent_classes"):
        legacy.load_network_pkl(str(tmp_path / 'encoder_only.pkl'))
    monkeypatch.syspath_prepend(str(meta_dir))                  # "pip install acme-plugin": its dist-info appears
    assert registry.list_injectors()['acme_tint'].dist.name == 'acme-plugin'
    assert 'acme_tiny_encoder' in registry.list_persistent_classes()
    data = legacy.load_network_pkl(str(path))
    assert type(data['encoder']).__name__ == 'TinyEncoder' and type(data['encoder']).__module__ == 'acme_plugin_xyz.encoder'
    img = torch.randn([2, 3, 32, 32], generator=torch.Generator().manual_seed(0))
    ws = E(img)
    assert torch.equal(data['encoder'](img), ws)
    assert torch.equal(data['G_ema'].synthesis(ws, noise_mode='const'), G.synthesis(ws, noise_mode='const'))
    assert type(legacy.load_network_pkl(str(tmp_path / 'encoder_only.pkl'))['encoder']) is type(data['encoder'])

def test_gradstyle_is_allowed_only_through_its_entry_points(fake_entry_points):
    from stylegan2_ada_pytorch import _class_allowlist
    assert _class_allowlist.ALLOWED_PACKAGES == ('stylegan2_ada_pytorch',)
    for dotted in ['gradstyle_plugin.stage.GradStyleStage', 'gradstyle_plugin.encoder.E4EEncoder', 'gradstyle_plugin.network.GradStyleNet']:
        assert _class_allowlist.resolve_class_name(dotted).__name__ == dotted.rsplit('.', 1)[1]   # installed metadata
    fake_entry_points()
    with pytest.raises(UnsafePickleError, match="refusing class_name 'gradstyle_plugin.encoder.E4EEncoder'"):
        _class_allowlist.resolve_class_name('gradstyle_plugin.encoder.E4EEncoder')
