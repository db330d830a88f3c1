"""The allow-listed unpickler: hostile payloads are refused before anything runs.

Each payload, if unpickled by a plain `pickle.Unpickler`, would create a marker file. The safe
loader must raise `UnsafePickleError` naming the refused global, and the marker must never appear.
One payload is run through plain pickle in a subprocess to show the marker check can fail.
"""

import io
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from stylegan2_ada_pytorch import legacy
from stylegan2_ada_pytorch._safe_unpickle import NetworkPickleError, PersistentRecord, safe_load
from stylegan2_ada_pytorch.torch_utils import persistence
from stylegan2_ada_pytorch.torch_utils.persistence import UnsafePickleError

#----------------------------------------------------------------------------
# Hand-written protocol-0 payloads: '{m}' is replaced by the marker path.

def _text_payloads(marker):
    m = marker.replace('\\', '/')
    return {
        'os.system': f"cos\nsystem\n(S'touch {m}'\ntR.",
        'posix.system': f"cposix\nsystem\n(S'touch {m}'\ntR.",
        'builtins.eval': f"cbuiltins\neval\n(S'open(\"{m}\", \"w\")'\ntR.",
        'builtins.exec': f"cbuiltins\nexec\n(S'open(\"{m}\", \"w\")'\ntR.",
        'subprocess.Popen': f"csubprocess\nPopen\n((S'touch'\nS'{m}'\nltR.",
        'builtins.getattr': f"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(S'os'\ntRS'system'\ntR(S'touch {m}'\ntR.",
        'builtins.__import__': "cbuiltins\n__import__\n(S'os'\ntR.",
        'copyreg._reconstructor': "ccopyreg\n_reconstructor\n(cos\nsystem\ncbuiltins\nobject\nNtR.",
        'functools.partial': f"cfunctools\npartial\n(cos\nsystem\nS'touch {m}'\ntR)R.",
        'operator.methodcaller': f"coperator\nmethodcaller\n(S'system'\nS'touch {m}'\ntR.",
        'importlib.import_module': "cimportlib\nimport_module\n(S'os'\ntR.",
        'os.system (INST opcode)': f"(S'touch {m}'\nios\nsystem\n.",
        # Allowed globals first, then the hostile one nested inside their arguments.
        'collections.OrderedDict + os.system': f"ccollections\nOrderedDict\n)R(S'k'\ncos\nsystem\n(S'touch {m}'\ntRs.",
        'persistence record + os.system': ("ctorch_utils.persistence\n_reconstruct_persistent_obj\n((dS'state'\n"
            f"cos\nsystem\n(S'touch {m}'\ntRstR."),
    }

_EXPECTED_GLOBAL = {
    'os.system (INST opcode)': 'os.system', 'collections.OrderedDict + os.system': 'os.system',
    'persistence record + os.system': 'os.system', 'builtins.getattr': 'builtins.getattr',
}

@pytest.mark.parametrize('label', list(_text_payloads('x')))
def test_hostile_text_payload_refused(tmp_path, label):
    marker = str(tmp_path / 'pwned')
    payload = _text_payloads(marker)[label].encode('latin-1')
    path = tmp_path / 'evil.pkl'
    path.write_bytes(payload)
    with pytest.raises(UnsafePickleError) as info:
        legacy.load_network_pkl(str(path))
    message = str(info.value)
    assert f'refusing global {_EXPECTED_GLOBAL.get(label, label)}' in message
    assert str(path) in message and '\n' not in message
    assert not os.path.exists(marker)

class _Reduce:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args
    def __reduce__(self):
        return (self.fn, self.args)

def test_hostile_binary_payloads_refused(tmp_path):
    marker = str(tmp_path / 'pwned')
    payloads = [
        _Reduce(os.system, f'touch {marker}'),
        dict(G=[1, 2, _Reduce(eval, f'open({marker!r}, "w")')]),
        _Reduce(getattr, _Reduce(__import__, 'os'), 'system'),
        _Reduce(subprocess.Popen, ['touch', marker]),
    ]
    for protocol in (2, 4):
        for obj in payloads:
            data = pickle.dumps(obj, protocol=protocol)
            with pytest.raises(UnsafePickleError, match='refusing global'):
                legacy.load_network_pkl(io.BytesIO(data))
            assert not os.path.exists(marker)

@pytest.mark.integration  # runs a subprocess
def test_marker_check_can_fail(tmp_path):
    # The same os.system payload through a plain unpickler (in a throw-away process) does create the file.
    marker = str(tmp_path / 'pwned')
    path = tmp_path / 'evil.pkl'
    path.write_bytes(_text_payloads(marker)['os.system'].encode('latin-1'))
    code = f'import pickle; pickle.load(open({str(path)!r}, "rb"))'  # safe: our own test payload, in a subprocess
    subprocess.run([sys.executable, '-c', code], check=True, capture_output=True)
    assert os.path.exists(marker)

#----------------------------------------------------------------------------

def test_storage_payload_is_decoded_weights_only(tmp_path):
    # A _load_from_bytes payload that is itself a hostile pickle: torch.load(weights_only=True) refuses it.
    marker = str(tmp_path / 'pwned')
    inner = _text_payloads(marker)['os.system'].encode('latin-1')
    outer = pickle.dumps(_Reduce(torch.storage._load_from_bytes, inner), protocol=4)
    with pytest.raises((UnsafePickleError, NetworkPickleError)):
        safe_load(io.BytesIO(outer), 'payload')
    assert not os.path.exists(marker)

def test_tensors_numpy_and_2021_spellings_load():
    # Protocol 3 with numpy 1.x's `numpy.core` spelling and builtins.set, as 2021 pickles have.
    data = dict(t=torch.nn.Parameter(torch.randn(3, 2)), b=torch.arange(4), s={'x', 'y'},
        g=np.float64(0.125), h=np.int64(7), a=np.arange(6, dtype=np.float32).reshape(2, 3))
    raw = pickle.dumps(data, protocol=3).replace(b'cnumpy._core.multiarray\n', b'cnumpy.core.multiarray\n')
    assert b'numpy.core.multiarray\nscalar' in raw and b'builtins\nset' in raw
    out = safe_load(io.BytesIO(raw), 'old.pkl')
    assert torch.equal(out['t'], data['t']) and isinstance(out['t'], torch.nn.Parameter)
    assert torch.equal(out['b'], data['b']) and out['s'] == {'x', 'y'}
    assert out['g'] == 0.125 and type(out['g']) is np.float64 and out['h'] == 7
    assert np.array_equal(out['a'], data['a']) and out['a'].dtype == np.float32

def test_object_arrays_and_dtypes_refused():
    with pytest.raises(UnsafePickleError, match="refusing numpy dtype 'O8'"):
        safe_load(io.BytesIO(pickle.dumps(np.array([1, 'a'], dtype=object))), 'obj.pkl')

def test_persistent_records_are_plain_data():
    obj = _Reduce(persistence._reconstruct_persistent_obj,
        dict(type='class', version=6, module_src='raise SystemExit("never run")\n', class_name='Thing', state=dict(a=1)))
    out = safe_load(io.BytesIO(persistence.dumps(dict(x=obj))), 'rec.pkl')['x']
    assert isinstance(out, PersistentRecord) and out.class_name == 'Thing' and out.state == dict(a=1)
    assert out.fingerprint == persistence.source_fingerprint('raise SystemExit("never run")\n')

@pytest.mark.parametrize('meta_change, message', [
    (dict(version=5), 'format version 5'),
    (dict(type='function'), "object type 'function'"),
    (dict(class_name='a b'), 'invalid persistent class name'),
])
def test_bad_persistent_records(meta_change, message):
    meta = dict(type='class', version=6, module_src='', class_name='Thing', state={})
    meta.update(meta_change)
    data = persistence.dumps(_Reduce(persistence._reconstruct_persistent_obj, meta))
    with pytest.raises(UnsafePickleError, match=message):
        safe_load(io.BytesIO(data), 'rec.pkl')

#----------------------------------------------------------------------------

def test_truncated_and_corrupt_files_one_line_error(tmp_path):
    good = pickle.dumps(dict(a=torch.randn(50, 50)), protocol=4)
    for label, data in [('truncated', good[: len(good) // 2]), ('garbage', os.urandom(256)), ('empty', b'')]:
        path = tmp_path / f'{label}.pkl'
        path.write_bytes(data)
        with pytest.raises((NetworkPickleError, UnsafePickleError)) as info:
            legacy.load_network_pkl(str(path))
        assert str(path) in str(info.value) and '\n' not in str(info.value)
        if label != 'garbage':  # random bytes may happen to spell a refused opcode/global
            assert 'truncated or corrupt' in str(info.value)

def test_missing_file_error(tmp_path):
    with pytest.raises(NetworkPickleError, match='cannot open'):
        legacy.load_network_pkl(str(tmp_path / 'nope.pkl'))

#----------------------------------------------------------------------------
