"""Compatibility with NVIDIA's loader, emulated, in both directions.

NVIDIA's `torch_utils.persistence` is emulated here from toolkit-compat.md 2.2/2.3 (a separate
decorator; `exec` of the stored module source into a fresh `_imported_module_<hex>` module;
`__new__` + `__setstate__`). It runs in a subprocess whose `sys.path` starts with top-level shim
packages `torch_utils` / `dnnlib` made in tmp_path: `persistence` is the emulation, every other
module is an alias of this package's implementation.

1. Our saved pickle loads in the emulation into classes exec'd from the stored source and gives
   the same images; re-pickled inside the emulation it loads again (theirs and ours).
2. NVIDIA's decorator wrapping one of our persistent classes pickles a real state (ours steps aside).
3. A pickle whose stored source would write a file and raise loads with our loader into our
   classes, with the same images, and the source never runs; the emulation does run it.
"""

import copy
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from stylegan2_ada_pytorch import legacy, testing
from stylegan2_ada_pytorch.torch_utils import persistence

#----------------------------------------------------------------------------

_NV_PERSISTENCE = '''
"""Test-local emulation of NVIDIA's torch_utils/persistence.py (behaviour from toolkit-compat.md 2.2-2.3)."""
import copy, inspect, sys, types, uuid
import dnnlib

_version = 6
_decorators = set()
_import_hooks = []
_module_to_src_dict = {}
_src_to_module_dict = {}

def persistent_class(orig_class):
    if is_persistent(orig_class):
        return orig_class
    orig_module = sys.modules[orig_class.__module__]
    orig_module_src = _module_to_src(orig_module)

    class Decorator(orig_class):
        _orig_module_src = orig_module_src
        _orig_class_name = orig_class.__name__

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._init_args = copy.deepcopy(args)
            self._init_kwargs = copy.deepcopy(kwargs)

        @property
        def init_args(self):
            return copy.deepcopy(self._init_args)

        @property
        def init_kwargs(self):
            return dnnlib.EasyDict(copy.deepcopy(self._init_kwargs))

        def __reduce__(self):
            fields = list(super().__reduce__())
            fields += [None] * max(3 - len(fields), 0)
            if fields[0] is not _reconstruct_persistent_obj:
                meta = dict(type='class', version=_version, module_src=self._orig_module_src,
                    class_name=self._orig_class_name, state=fields[2])
                fields[0] = _reconstruct_persistent_obj
                fields[1] = (meta,)
                fields[2] = None
            return tuple(fields)

    Decorator.__name__ = orig_class.__name__
    _decorators.add(Decorator)
    return Decorator

def is_persistent(obj):
    try:
        if obj in _decorators:
            return True
    except TypeError:
        pass
    return type(obj) in _decorators

def import_hook(hook):
    _import_hooks.append(hook)

def _reconstruct_persistent_obj(meta):
    meta = dnnlib.EasyDict(meta)
    meta.state = dnnlib.EasyDict(meta.state)
    for hook in _import_hooks:
        meta = hook(meta)
    assert meta.version == _version
    module = _src_to_module(meta.module_src)
    assert meta.type == 'class'
    decorator_class = persistent_class(module.__dict__[meta.class_name])
    obj = decorator_class.__new__(decorator_class)
    obj.__setstate__(meta.state)
    return obj

def _module_to_src(module):
    src = _module_to_src_dict.get(module, None)
    if src is None:
        src = inspect.getsource(module)
        _module_to_src_dict[module] = src
        _src_to_module_dict[src] = module
    return src

def _src_to_module(src):
    module = _src_to_module_dict.get(src, None)
    if module is None:
        module_name = '_imported_module_' + uuid.uuid4().hex
        module = types.ModuleType(module_name)
        sys.modules[module_name] = module
        _module_to_src_dict[module] = src
        _src_to_module_dict[src] = module
        exec(src, module.__dict__)  # safe: emulates NVIDIA's loader in a subprocess; the behaviour under test
    return module
'''

def _alias(target):
    return f'import sys, importlib\nsys.modules[__name__] = importlib.import_module({target!r})\n'

def make_shims(root):
    """Top-level `torch_utils` and `dnnlib` packages in `root`: emulated persistence, aliases for the rest."""
    ops = ('bias_act', 'conv2d_resample', 'upfirdn2d', 'fma', 'conv2d_gradfix', 'grid_sample_gradfix')
    files = {
        'torch_utils/__init__.py': '',
        'torch_utils/persistence.py': _NV_PERSISTENCE,
        'torch_utils/misc.py': _alias('stylegan2_ada_pytorch.torch_utils.misc'),
        'torch_utils/training_stats.py': _alias('stylegan2_ada_pytorch.torch_utils.training_stats'),
        'torch_utils/custom_ops.py': _alias('stylegan2_ada_pytorch.torch_utils.custom_ops'),
        'torch_utils/ops/__init__.py': '',
        'dnnlib/__init__.py': 'from .util import EasyDict\n',
        'dnnlib/util.py': _alias('stylegan2_ada_pytorch.dnnlib.util'),
        **{f'torch_utils/ops/{op}.py': _alias(f'stylegan2_ada_pytorch.torch_utils.ops.{op}') for op in ops},
    }
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text)

_PRELUDE = '''
import pickle, sys, torch
sys.path.insert(0, {shims!r})
import dnnlib
from torch_utils import persistence as nv_persistence

class _TFStub(dnnlib.EasyDict):
    pass

class NVLegacyUnpickler(pickle.Unpickler):  # NVIDIA legacy.py: only the TF Network name is remapped
    def find_class(self, module, name):
        if module == 'dnnlib.tflib.network' and name == 'Network':
            return _TFStub
        return super().find_class(module, name)

def nv_load(path):
    with open(path, 'rb') as f:
        return NVLegacyUnpickler(f).load()  # safe: emulating NVIDIA's loader on our own test file

def images(G):
    z = torch.randn([2, G.z_dim], generator=torch.Generator().manual_seed(1))
    return G(z, None, noise_mode='const', force_fp32=True)
'''

def run_emulation(tmp_path, body, **fmt):
    make_shims(str(tmp_path / 'shims'))
    code = _PRELUDE.format(shims=str(tmp_path / 'shims')) + textwrap.dedent(body).format(**fmt)
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300, cwd=str(tmp_path))

def images(G):
    z = torch.randn([2, G.z_dim], generator=torch.Generator().manual_seed(1))
    return G(z, None, noise_mode='const', force_fp32=True)

def randomized_snapshot(G):
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in G.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return dict(G=G, D=testing.tiny_discriminator(), G_ema=copy.deepcopy(G), training_set_kwargs=None, augment_pipe=None)

#----------------------------------------------------------------------------

@pytest.mark.integration  # runs a subprocess
def test_our_pickle_loads_and_resaves_in_nvidia_emulation(tmp_path):
    G = testing.tiny_generator(synthesis_kwargs=dict(injector_kwargs={'b16': [testing.zero_conv_spec(16)]}))
    data = randomized_snapshot(G)
    legacy.save_network_pkl(data, tmp_path / 'ours.pkl')
    torch.save(images(G), tmp_path / 'ref.pt')
    res = run_emulation(tmp_path, '''
        data = nv_load('ours.pkl')
        G = data['G_ema']
        assert type(G).__bases__[0].__module__.startswith('_imported_module_'), type(G).__bases__
        assert nv_persistence.is_persistent(G) and nv_persistence.is_persistent(G.synthesis.b8.conv1)
        assert type(G.synthesis.injectors.b16[0]).__bases__[0].__module__.startswith('_imported_module_')
        ref = torch.load('ref.pt', weights_only=True)
        print('nv-emulation max abs diff', (images(G) - ref).abs().max().item())
        assert torch.equal(images(G), ref)
        blob = pickle.dumps(data)
        with open('resaved.pkl', 'wb') as f:
            f.write(blob)
        assert torch.equal(images(pickle.loads(blob)['G_ema']), ref)  # safe: our own bytes, just written
        print('ok')
    ''')
    assert res.returncode == 0 and res.stdout.strip().endswith('ok'), res.stderr[-3000:]
    print(res.stdout)
    out = legacy.load_network_pkl(str(tmp_path / 'resaved.pkl'))
    assert type(out['G_ema']) is type(G) and torch.equal(images(out['G_ema']), images(G))

@pytest.mark.integration  # runs a subprocess
def test_our_decorator_steps_aside_under_nvidia_decorator(tmp_path):
    res = run_emulation(tmp_path, '''
        from stylegan2_ada_pytorch import networks
        Wrapped = nv_persistence.persistent_class(networks.FullyConnectedLayer)
        layer = Wrapped(4, 3, bias_init=0.5)
        reducer, args = layer.__reduce__()[:2]
        assert reducer is nv_persistence._reconstruct_persistent_obj
        state = args[0]['state']
        assert isinstance(state, dict) and set(state['_parameters']) == {{'weight', 'bias'}}, state
        copy_ = pickle.loads(pickle.dumps(layer))  # safe: our own bytes
        assert torch.equal(copy_.weight, layer.weight) and torch.equal(copy_.bias, layer.bias)
        print('ok')
    ''')
    assert res.returncode == 0 and res.stdout.strip() == 'ok', res.stderr[-3000:]

@pytest.mark.integration  # runs a subprocess
def test_hostile_stored_source_never_runs(tmp_path, monkeypatch):
    G = testing.tiny_generator()
    data = randomized_snapshot(G)
    marker = tmp_path / 'source_was_executed'
    evil = f'open({str(marker)!r}, "w").close()\nraise RuntimeError("stored source executed")\n'
    for module in list(data['G'].modules()) + list(data['D'].modules()):
        if persistence.is_persistent(module):
            monkeypatch.setattr(type(module), '_orig_module_src', evil)
    legacy.save_network_pkl(data, tmp_path / 'evil.pkl')
    monkeypatch.undo()
    assert evil.encode() in (tmp_path / 'evil.pkl').read_bytes()

    out = legacy.load_network_pkl(str(tmp_path / 'evil.pkl'))
    assert not marker.exists()
    assert type(out['G_ema']) is type(G) and torch.equal(images(out['G_ema']), images(G))
    img = torch.randn([2, 3, 32, 32], generator=torch.Generator().manual_seed(3))
    assert torch.equal(out['D'](img, None), data['D'](img, None))

    # The same file through the emulated NVIDIA loader does execute the source (the check can fail).
    res = run_emulation(tmp_path, '''
        nv_load('evil.pkl')
    ''')
    assert res.returncode != 0 and 'stored source executed' in res.stderr and marker.exists()

#----------------------------------------------------------------------------
