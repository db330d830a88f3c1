"""load_network_pkl / save_network_pkl on the toolkit's own snapshot layout.

Round trips, the exact globals a saved file names, atomic writes, injectors (persistent and
transient), class_name allow-listing before construction, attribute/tensor mismatch errors,
the stylegan3 flat Generator layout, force_fp16, and loading without top-level `torch_utils`
or `dnnlib` modules. NVIDIA-loader compatibility lives in test_legacy_nvidia.py.
"""

import copy
import io
import os
import pickle
import pickletools
import subprocess
import sys
import textwrap

import pytest
import torch

from stylegan2_ada_pytorch import legacy, testing
from stylegan2_ada_pytorch import _class_allowlist
from stylegan2_ada_pytorch._rebuild import translate_init_kwargs
from stylegan2_ada_pytorch._safe_unpickle import NetworkPickleError
from stylegan2_ada_pytorch.torch_utils import persistence
from stylegan2_ada_pytorch.torch_utils.persistence import UnsafePickleError

#----------------------------------------------------------------------------

def pickle_globals(data):
    """Every (module, name) a pickle asks find_class for, read with pickletools (memo-aware)."""
    found, memo, pushed = set(), {}, []
    for op, arg, _pos in pickletools.genops(data):
        if op.name in ('GLOBAL', 'INST'):
            found.add(tuple(arg.split(' ', 1)))
        elif op.name == 'STACK_GLOBAL':
            found.add((pushed[-2], pushed[-1]))
        elif op.name in ('SHORT_BINUNICODE', 'BINUNICODE', 'UNICODE', 'BINUNICODE8'):
            pushed.append(arg)
        elif op.name == 'MEMOIZE':
            memo[len(memo)] = pushed[-1] if pushed else None
        elif op.name in ('BINPUT', 'LONG_BINPUT', 'PUT'):
            memo[arg] = pushed[-1] if pushed else None
        elif op.name in ('BINGET', 'LONG_BINGET', 'GET'):
            pushed.append(memo.get(arg))
        elif op.stack_after:
            pushed.append(None)
    return found

SAVE_GLOBALS = {
    ('torch_utils.persistence', '_reconstruct_persistent_obj'),
    ('dnnlib.util', 'EasyDict'),
    ('collections', 'OrderedDict'),
    ('torch._utils', '_rebuild_parameter'),
    ('torch._utils', '_rebuild_tensor_v2'),
    ('torch.storage', '_load_from_bytes'),
}

def images(G, seed=1, n=2, **kwargs):
    z = torch.randn([n, G.z_dim], generator=torch.Generator().manual_seed(seed))
    return G(z, None, noise_mode='const', **kwargs)

def snapshot(G=None, D=None):
    G = G if G is not None else testing.tiny_generator(seed=1, mapping_kwargs=dict(num_layers=2))
    D = D if D is not None else testing.tiny_discriminator(seed=2)
    return dict(G=G, D=D, G_ema=copy.deepcopy(G), training_set_kwargs=dict(class_name='training.dataset.ImageFolderDataset',
        path='/data/x.zip', use_labels=False, max_size=10, xflip=False, resolution=32), augment_pipe=None)

def randomize(module, seed=3):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)

#----------------------------------------------------------------------------

def test_round_trip_identical_outputs(tmp_path):
    data = snapshot()
    randomize(data['G_ema'])  # noise_strength etc. non-zero
    path = tmp_path / 'net.pkl'
    legacy.save_network_pkl(data, path)
    out = legacy.load_network_pkl(str(path))
    assert list(out) == ['G', 'D', 'G_ema', 'training_set_kwargs', 'augment_pipe']
    for key in ('G', 'G_ema'):
        assert type(out[key]) is type(data[key]) and not out[key].training
        assert all(not p.requires_grad for p in out[key].parameters())
        assert torch.equal(images(out[key]), images(data[key]))
        assert out[key].init_kwargs == data[key].init_kwargs
    img = torch.randn([4, 3, 32, 32], generator=torch.Generator().manual_seed(5))
    assert torch.equal(out['D'](img, None), data['D'](img, None))
    assert out['training_set_kwargs'] == data['training_set_kwargs'] and out['augment_pipe'] is None
    with open(path, 'rb') as f:  # file objects work too
        assert torch.equal(images(legacy.load_network_pkl(f)['G_ema']), images(data['G_ema']))

def test_saved_file_names_only_allowed_globals(tmp_path):
    G = testing.tiny_generator(synthesis_kwargs=dict(conv_clamp=256))  # EasyDict in init kwargs
    legacy.save_network_pkl(snapshot(G=G), tmp_path / 'net.pkl')
    data = (tmp_path / 'net.pkl').read_bytes()
    assert data[:2] == b'\x80\x04'
    found = pickle_globals(data)
    print('globals:', sorted(found))
    assert found == SAVE_GLOBALS
    assert not any(module.startswith('numpy') for module, _ in found)

def test_save_is_atomic(tmp_path):
    path = tmp_path / 'net.pkl'
    path.write_bytes(b'previous')
    bad = snapshot()
    bad['extra'] = lambda: None  # unpicklable: the dump fails halfway
    with pytest.raises(pickle.PicklingError):
        legacy.save_network_pkl(bad, path)
    assert path.read_bytes() == b'previous' and os.listdir(tmp_path) == ['net.pkl']
    legacy.save_network_pkl(snapshot(), path)
    assert os.listdir(tmp_path) == ['net.pkl'] and path.read_bytes()[:2] == b'\x80\x04'

def test_training_flag_and_internal_keys(tmp_path):
    data = snapshot()
    data['G'].mapping.train()
    data['G'].synthesis.__dict__['_future_torch_internal'] = {}  # unknown torch-internal state key
    legacy.save_network_pkl(data, tmp_path / 'net.pkl')
    G = legacy.load_network_pkl(str(tmp_path / 'net.pkl'))['G']
    assert G.mapping.training and G.mapping.fc0.training and not G.training and not G.synthesis.training

#----------------------------------------------------------------------------
# Injectors.

def _with_injector(seed=4):
    G = testing.tiny_generator(synthesis_kwargs=dict(injector_kwargs={'b16': [testing.zero_conv_spec(
        testing.tiny_generator().synthesis.stage_channels['b16'])]}))
    randomize(G.synthesis.injectors, seed)
    return G

def test_persistent_injectors_round_trip(tmp_path):
    G = _with_injector()
    base = testing.tiny_generator()
    assert (images(G) - images(base)).abs().max() > 1e-3  # the injector does something
    data = snapshot(G=G)
    assert 'injectors' in data['G_ema'].synthesis._modules  # deepcopy keeps them
    legacy.save_network_pkl(data, tmp_path / 'net.pkl')
    out = legacy.load_network_pkl(str(tmp_path / 'net.pkl'))
    assert type(out['G_ema'].synthesis.injectors.b16[0]) is testing.ZeroConvInjector
    assert torch.equal(images(out['G_ema']), images(G)) and torch.equal(images(out['G']), images(G))

def test_transient_injector_refused(tmp_path):
    G = testing.tiny_generator()
    handle = G.synthesis.register_injector('b16', testing.ZeroConvInjector(G.synthesis.stage_channels['b16']))
    with pytest.raises(ValueError, match='register_injector'):
        legacy.save_network_pkl(snapshot(G=G), tmp_path / 'net.pkl')
    assert not (tmp_path / 'net.pkl').exists()
    handle.remove()
    legacy.save_network_pkl(snapshot(G=G), tmp_path / 'net.pkl')

def _save_with_class_name(tmp_path, class_name):
    G = _with_injector()
    G._init_kwargs['synthesis_kwargs']['injector_kwargs']['b16'][0]['class_name'] = class_name
    path = tmp_path / 'net.pkl'
    legacy.save_network_pkl(snapshot(G=G), path)
    return path

def test_injector_class_name_outside_allow_list(tmp_path, monkeypatch):
    # A module that would leave a marker when imported: the prefix check must refuse it unimported.
    (tmp_path / 'marker_mod_xyz.py').write_text(f'open({str(tmp_path / "imported")!r}, "w").close()\nclass Thing: pass\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ('marker_mod_xyz.Thing', 'os.system', 'builtins.eval'):
        path = _save_with_class_name(tmp_path, name)
        with pytest.raises(UnsafePickleError, match=f"refusing class_name '{name}'"):
            legacy.load_network_pkl(str(path))
    assert not (tmp_path / 'imported').exists() and 'marker_mod_xyz' not in sys.modules

def test_injector_class_name_must_be_persistent_module(tmp_path):
    path = _save_with_class_name(tmp_path, 'stylegan2_ada_pytorch.dnnlib.util.EasyDict')
    with pytest.raises(UnsafePickleError, match='not a persistent torch.nn.Module class'):
        legacy.load_network_pkl(str(path))

#----------------------------------------------------------------------------
# Mismatches between a record and the rebuilt network.

@pytest.mark.parametrize('mutate, message', [
    (lambda G: setattr(G.synthesis.b8.conv1, 'conv_clamp', 128), 'synthesis.b8.conv1.conv_clamp is 128'),
    (lambda G: setattr(G.synthesis.b8, 'architecture', 'resnet'), "synthesis.b8.architecture is 'resnet'"),
    (lambda G: setattr(G.mapping, 'w_avg_beta', 0.9), 'mapping.w_avg_beta is 0.9'),
    (lambda G: setattr(G.synthesis.b8.conv1, 'bias', torch.nn.Parameter(torch.zeros(5))), r'synthesis.b8.conv1.bias is \[5\]'),
    (lambda G: delattr(G.synthesis.b8.conv1, 'noise_const'), r"buffers differ: only in the file \[\], only in the rebuilt SynthesisLayer \['noise_const'\]"),
    (lambda G: G.synthesis.b8.conv1.register_buffer('extra', torch.zeros(1)), r"only in the file \['extra'\]"),
    (lambda G: setattr(G.synthesis.b8, 'extra_layer', testing.tiny_generator().mapping.fc0), "submodules differ"),
])
def test_record_mismatch_errors(tmp_path, mutate, message):
    G = testing.tiny_generator()
    mutate(G)
    legacy.save_network_pkl(snapshot(G=G), tmp_path / 'net.pkl')
    with pytest.raises(NetworkPickleError, match=message) as info:
        legacy.load_network_pkl(str(tmp_path / 'net.pkl'))
    assert '\n' not in str(info.value) and 'net.pkl' in str(info.value)

#----------------------------------------------------------------------------
# Class resolution and the stylegan3 flat layout.

class _Reduce:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args
    def __reduce__(self):
        return (self.fn, self.args)

def _record_pickle(class_name, module_src, state=None):
    meta = dict(type='class', version=6, module_src=module_src, class_name=class_name, state=state or {})
    return persistence.dumps(dict(G=_Reduce(persistence._reconstruct_persistent_obj, meta)))

def test_unknown_and_stylegan3_classes_refused(monkeypatch):
    with pytest.raises(UnsafePickleError, match="unknown persistent class 'SynthesisInput'"):
        legacy.load_network_pkl(io.BytesIO(_record_pickle('SynthesisInput', '# a stylegan3 fork\n')))
    monkeypatch.setattr(_class_allowlist, 'NV_NETWORKS_SG3_STYLEGAN3', persistence.source_fingerprint('# sg3\n'))
    with pytest.raises(UnsafePickleError, match='StyleGAN3 .alias-free. network'):
        legacy.load_network_pkl(io.BytesIO(_record_pickle('Generator', '# sg3\n')))

def test_unavailable_class_fails_clearly(monkeypatch):
    monkeypatch.setattr(_class_allowlist, '_AUGMENT_MODULE', 'stylegan2_ada_pytorch.training.no_such_module')
    with pytest.raises(UnsafePickleError, match='AugmentPipe is not available'):
        legacy.load_network_pkl(io.BytesIO(_record_pickle('AugmentPipe', '# augment\n')))

def test_sg3_defaults_translation():
    flat = dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3, mapping_kwargs=dict(num_layers=2),
        channel_base=256, channel_max=32, fused_modconv_default='inference_only')
    out = translate_init_kwargs('Generator', 'sg3', flat)
    assert out.synthesis_kwargs == dict(channel_base=256, channel_max=32, num_fp16_res=4, conv_clamp=256)
    assert out.mapping_kwargs == dict(num_layers=2, w_avg_beta=0.998)
    assert translate_init_kwargs('Discriminator', 'sg3', dict(c_dim=0)) == dict(c_dim=0, num_fp16_res=4, conv_clamp=256)
    assert translate_init_kwargs('Generator', 'ada', flat) == flat

def test_fork_with_flat_layout_loads(tmp_path, monkeypatch):
    # A networks.py fork (unknown source hash) that uses stylegan3's flat Generator kwargs and defaults.
    G = testing.tiny_generator(mapping_kwargs=dict(w_avg_beta=0.998),
        synthesis_kwargs=dict(num_fp16_res=4, conv_clamp=256))
    randomize(G)
    G._init_kwargs = dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
        mapping_kwargs=dict(num_layers=2), channel_base=256, channel_max=32, fused_modconv_default='inference_only')
    data = snapshot(G=G)
    for cls in {type(m) for m in G.modules() if persistence.is_persistent(m)}:
        monkeypatch.setattr(cls, '_orig_module_src', '# forked networks.py\n')
    legacy.save_network_pkl(data, tmp_path / 'net.pkl')
    monkeypatch.undo()
    out = legacy.load_network_pkl(str(tmp_path / 'net.pkl'))['G']
    assert out.init_kwargs.synthesis_kwargs['num_fp16_res'] == 4 and out.synthesis.b32.use_fp16
    assert torch.equal(images(out, force_fp32=True), images(G, force_fp32=True))

#----------------------------------------------------------------------------

def test_force_fp16(tmp_path):
    data = snapshot()
    randomize(data['G_ema'])
    legacy.save_network_pkl(data, tmp_path / 'net.pkl')
    out = legacy.load_network_pkl(str(tmp_path / 'net.pkl'), force_fp16=True)
    for key in ('G', 'G_ema'):
        kw = out[key].init_kwargs.synthesis_kwargs
        assert (kw['num_fp16_res'], kw['conv_clamp']) == (4, 256)
        assert [out[key].synthesis.__getattr__(f'b{r}').use_fp16 for r in (4, 8, 16, 32)] == [False, True, True, True]
    assert (out['D'].init_kwargs.num_fp16_res, out['D'].init_kwargs.conv_clamp) == (4, 256)
    diff = (images(out['G_ema'], force_fp32=True) - images(data['G_ema'], force_fp32=True)).abs().max().item()
    print('force_fp16 rebuild, fp32 forward max abs diff:', diff)
    assert diff < 1e-5

@pytest.mark.integration  # runs a subprocess
def test_loading_needs_no_toplevel_toolkit_modules(tmp_path):
    data = snapshot(G=_with_injector())
    legacy.save_network_pkl(data, tmp_path / 'net.pkl')
    torch.save(images(data['G_ema']), tmp_path / 'ref.pt')
    code = textwrap.dedent(f'''
        import sys
        sys.modules['torch_utils'] = None   # any import of these names now fails
        sys.modules['dnnlib'] = None
        import torch
        from stylegan2_ada_pytorch import legacy
        out = legacy.load_network_pkl({str(tmp_path / 'net.pkl')!r})
        z = torch.randn([2, out['G_ema'].z_dim], generator=torch.Generator().manual_seed(1))
        img = out['G_ema'](z, None, noise_mode='const')
        assert torch.equal(img, torch.load({str(tmp_path / 'ref.pt')!r}, weights_only=True))
        assert sys.modules['torch_utils'] is None and sys.modules['dnnlib'] is None
        assert not any(m.startswith(('torch_utils.', 'dnnlib.')) for m in sys.modules)
        print('ok')
    ''')
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == 'ok', res.stderr

#----------------------------------------------------------------------------

def test_augment_pipe_round_trip(tmp_path):
    from stylegan2_ada_pytorch.training.augment import AugmentPipe
    pipe = AugmentPipe(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1,
        lumaflip=1, hue=1, saturation=1).eval()
    pipe.p.copy_(torch.tensor(0.6))
    data = dict(snapshot(), augment_pipe=pipe)
    legacy.save_network_pkl(data, tmp_path / 'net.pkl')
    out = legacy.load_network_pkl(str(tmp_path / 'net.pkl'))['augment_pipe']
    assert type(out) is AugmentPipe and out.p.item() == pytest.approx(0.6)
    for (name, a), (_, b) in zip(pipe.named_buffers(), out.named_buffers()):
        assert torch.equal(a, b), name
    img = torch.rand([4, 3, 32, 32], generator=torch.Generator().manual_seed(0)) * 2 - 1
    torch.manual_seed(11)
    ref = pipe(img)
    torch.manual_seed(11)
    assert torch.equal(out(img), ref)

def test_2021_style_pickle_loads(tmp_path):
    # Protocol 3 (builtins.set for _non_persistent_buffers_set) and numpy.float64 gains written with
    # numpy 1.x's `numpy.core` spelling, as NVIDIA's 2021 snapshots are.
    import numpy as np
    data = snapshot()
    for key in ('G', 'D', 'G_ema'):
        for module in data[key].modules():
            for attr in ('weight_gain', 'act_gain'):
                if isinstance(module.__dict__.get(attr), float):
                    module.__dict__[attr] = np.float64(module.__dict__[attr])
    raw = persistence.dumps(data, protocol=3).replace(b'cnumpy._core.multiarray\n', b'cnumpy.core.multiarray\n')
    found = pickle_globals(raw)
    assert ('numpy.core.multiarray', 'scalar') in found and ('builtins', 'set') in found and ('numpy', 'dtype') in found
    (tmp_path / 'old.pkl').write_bytes(raw)
    out = legacy.load_network_pkl(str(tmp_path / 'old.pkl'))
    assert torch.equal(images(out['G_ema']), images(data['G_ema']))

@pytest.mark.integration  # runs a subprocess
def test_other_persistent_objects_found_by_source(tmp_path):
    # A top-level persistent object whose module is not imported yet is found by matching its
    # stored source against the files of the allowed packages (here stylegan2_ada_pytorch/testing.py).
    extra = testing.ZeroConvInjector(8)
    randomize(extra)
    legacy.save_network_pkl(dict(snapshot(), extra=extra), tmp_path / 'net.pkl')
    torch.save(extra.conv.weight, tmp_path / 'ref.pt')
    code = textwrap.dedent(f'''
        import sys, torch
        from stylegan2_ada_pytorch import legacy
        assert 'stylegan2_ada_pytorch.testing' not in sys.modules
        extra = legacy.load_network_pkl({str(tmp_path / 'net.pkl')!r})['extra']
        assert type(extra).__module__ == 'stylegan2_ada_pytorch.testing' and type(extra).__name__ == 'ZeroConvInjector'
        assert torch.equal(extra.conv.weight, torch.load({str(tmp_path / 'ref.pt')!r}, weights_only=True))
        print('ok')
    ''')
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == 'ok', res.stderr

def test_round_trip_conditional_resnet_fp16(tmp_path):
    G = testing.tiny_generator(c_dim=4, synthesis_kwargs=dict(architecture='resnet', num_fp16_res=2, conv_clamp=256))
    D = testing.tiny_discriminator(c_dim=4, architecture='skip', block_kwargs=dict(freeze_layers=2))
    randomize(G)
    legacy.save_network_pkl(snapshot(G=G, D=D), tmp_path / 'net.pkl')
    out = legacy.load_network_pkl(str(tmp_path / 'net.pkl'))
    z, c = torch.randn([2, 32], generator=torch.Generator().manual_seed(0)), torch.eye(4)[:2]
    assert torch.equal(out['G_ema'](z, c, noise_mode='const', force_fp32=True), G(z, c, noise_mode='const', force_fp32=True))
    img = torch.randn([2, 3, 32, 32], generator=torch.Generator().manual_seed(1))
    assert torch.equal(out['D'](img, c), D(img, c))
    assert out['D'].b32.fromrgb.weight.requires_grad is False and 'weight' in out['D'].b32.fromrgb._buffers  # frozen layer
