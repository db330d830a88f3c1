"""persistent_class: recorded init args, the toolkit pickle layout, no exec on rebuild."""

import copy
import copyreg
import dataclasses
import io
import pickle
import pickletools

import pytest
import torch

from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch.torch_utils import persistence
from tests.toolkit._persistent_fixtures import Affine, Pair

#----------------------------------------------------------------------------

def _globals(data):
    """Every (module, name) global a pickle stream refers to, read with pickletools (no loading)."""
    found, pushed, memo = [], [], []
    for op, arg, _pos in pickletools.genops(io.BytesIO(data)):
        if op.name in ('SHORT_BINUNICODE', 'BINUNICODE', 'UNICODE', 'BINUNICODE8'):
            pushed.append(arg)
        elif op.name == 'MEMOIZE':
            memo.append(pushed[-1] if pushed else None)
        elif op.name in ('BINGET', 'LONG_BINGET'):
            pushed.append(memo[arg])
        elif op.name == 'STACK_GLOBAL':
            found.append((pushed[-2], pushed[-1]))
            pushed.append(None)
        elif op.name == 'GLOBAL':
            found.append(tuple(arg.split(' ', 1)))
        else:
            pushed.append(None)
    return found

#----------------------------------------------------------------------------

def test_init_args_recorded_and_copied():
    cfg = dnnlib.EasyDict(mode='x', sizes=[1, 2])
    m = Affine(3, 4, scale=2.0, cfg=cfg)
    cfg.sizes.append(3)  # later changes to the caller's object do not leak in
    assert m.init_args == (3, 4)
    assert m.init_kwargs == {'scale': 2.0, 'cfg': {'mode': 'x', 'sizes': [1, 2]}}
    assert isinstance(m.init_kwargs, dnnlib.EasyDict)
    assert isinstance(m.init_kwargs.cfg, dnnlib.EasyDict)
    m.init_kwargs.scale = 5.0  # the property hands out copies
    assert m.init_kwargs.scale == 2.0
    assert persistence.is_persistent(m) and persistence.is_persistent(Affine)
    assert not persistence.is_persistent(torch.nn.Linear(2, 2))

def test_rebuild_from_init_kwargs():
    m = Pair(5)
    m2 = type(m)(*m.init_args, **m.init_kwargs)
    with torch.no_grad():
        for (n1, t1), (n2, t2) in zip(m.state_dict().items(), m2.state_dict().items()):
            assert n1 == n2
            t2.copy_(t1)
    x = torch.randn(2, 5)
    assert torch.equal(m(x), m2(x))

@dataclasses.dataclass
class _Cfg:
    lr: float = 0.1

@pytest.mark.parametrize('bad', [lambda x: x, _Cfg(), object(), {1.5: 'float key'}])
def test_non_plain_init_args_refused(bad):
    with pytest.raises(TypeError, match='Affine init args'):
        Affine(2, 2, cfg=bad)

#----------------------------------------------------------------------------

def test_stored_source_uses_toolkit_import_names():
    src = Affine._orig_module_src
    assert 'from torch_utils import persistence' in src
    assert 'stylegan2_ada_pytorch.torch_utils' not in src
    net_src = persistence._module_to_src(persistence)
    assert '\nimport dnnlib\n' in net_src and 'from .. import dnnlib' not in net_src

def test_import_spelling_rules():
    src = '\n'.join([
        'from .torch_utils import misc, persistence',
        'from .torch_utils.ops import bias_act',
        'from . import dnnlib',
        'from .injection import Injector',
        'from stylegan2_ada_pytorch.torch_utils import misc',
        'from stylegan2_ada_pytorch import dnnlib',
        'import numpy as np',
    ])
    out = persistence.toolkit_import_spelling(src, 'stylegan2_ada_pytorch').splitlines()
    assert out == [
        'from torch_utils import misc, persistence',
        'from torch_utils.ops import bias_act',
        'import dnnlib',
        'from stylegan2_ada_pytorch.injection import Injector',
        'from torch_utils import misc',
        'import dnnlib',
        'import numpy as np',
    ]

def test_toolkit_pickle_layout():
    m = Affine(4, 4, cfg=dnnlib.EasyDict(mode='b', inner=dnnlib.EasyDict(k=1)))
    data = persistence.dumps(m)
    names = set(_globals(data))
    assert ('torch_utils.persistence', '_reconstruct_persistent_obj') in names
    assert ('dnnlib.util', 'EasyDict') in names
    assert not any(mod.startswith('numpy') for mod, _ in names), names
    assert not any(mod.startswith('stylegan2_ada_pytorch') for mod, _ in names), names
    allowed = {('torch_utils.persistence', '_reconstruct_persistent_obj'), ('dnnlib.util', 'EasyDict'),
        ('collections', 'OrderedDict'), ('torch._utils', '_rebuild_parameter'),
        ('torch._utils', '_rebuild_tensor_v2'), ('torch.storage', '_load_from_bytes')}
    assert names <= allowed, names - allowed

def test_meta_record():
    m = Affine(2, 3, scale=0.5)
    fn, args, state = m.__reduce__()[:3]
    assert fn is persistence._reconstruct_persistent_obj and state is None
    meta = args[0]
    assert set(meta) == {'type', 'version', 'module_src', 'class_name', 'state'}
    assert meta['type'] == 'class' and meta['version'] == 6 and meta['class_name'] == 'Affine'
    assert meta['state']['_init_args'] == (2, 3) and meta['state']['_init_kwargs'] == {'scale': 0.5}
    assert '_parameters' in meta['state'] and 'weight' in meta['state']['_parameters']

def test_own_names_round_trip_and_deepcopy():
    m = Pair(6)
    x = torch.randn(3, 6)
    for clone in [pickle.loads(persistence.dumps(m, toolkit_names=False)), copy.deepcopy(m)]:  # safe: bytes this test just made
        assert type(clone) is type(m)
        assert clone.init_kwargs == m.init_kwargs
        assert torch.equal(clone(x), m(x))
        assert clone.a.weight is not m.a.weight

def test_unknown_source_is_refused_without_exec(tmp_path):
    marker = tmp_path / 'ran'
    src = f'open({str(marker)!r}, "w").write("x")\nclass Affine: pass\n'
    meta = dict(type='class', version=6, module_src=src, class_name='Affine', state={})
    with pytest.raises(persistence.UnsafePickleError, match='load_network_pkl'):
        persistence._reconstruct_persistent_obj(meta)
    assert not marker.exists()

def test_wrong_version_refused():
    meta = dict(type='class', version=5, module_src=Affine._orig_module_src, class_name='Affine', state={})
    with pytest.raises(persistence.UnsafePickleError, match='version'):
        persistence._reconstruct_persistent_obj(meta)

def test_import_hook_applied():
    m = Affine(2, 2)
    calls = []
    def hook(meta):
        calls.append(meta.class_name)
        meta.state['scale'] = 7.0
        return meta
    persistence.import_hook(hook)
    try:
        clone = copy.deepcopy(m)
    finally:
        persistence._import_hooks.remove(hook)
    assert calls == ['Affine'] and clone.scale == 7.0

def test_steps_aside_for_foreign_wrapper():
    class Foreign(Affine):  # what another persistence implementation's decorator would create
        pass
    obj = Foreign(2, 2)
    fields = obj.__reduce__()
    assert fields[0] is copyreg._reconstructor
    assert isinstance(fields[2], dict) and 'weight' in fields[2]['_parameters']

#----------------------------------------------------------------------------
