"""dnnlib.util: EasyDict, objects by name, open_url for local paths and an offline machine."""

import io
import os

import pytest

from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch.dnnlib import util


def test_easydict_attribute_access():
    d = dnnlib.EasyDict(a=1)
    d.b = 2
    assert d == {'a': 1, 'b': 2} and d.a == 1
    del d.a
    assert 'a' not in d
    with pytest.raises(AttributeError):
        _ = d.missing
    with pytest.raises(AttributeError):
        del d.missing

def test_construct_and_call_by_name():
    od = util.construct_class_by_name(class_name='collections.OrderedDict', a=1)
    assert list(od.items()) == [('a', 1)]
    assert util.call_func_by_name(3, 4, func_name='math.hypot') == 5.0
    assert util.get_obj_by_name('os.path.join') is os.path.join
    with pytest.raises(ImportError):
        util.get_obj_by_name('no_such_module_xyz.thing')
    with pytest.raises(AttributeError):
        util.get_obj_by_name('os.path.no_such_function')

def test_open_url_local_and_file_url(tmp_path):
    p = tmp_path / 'x.bin'
    p.write_bytes(b'abc')
    with util.open_url(str(p)) as f:
        assert f.read() == b'abc'
    with util.open_url(p.as_uri()) as f:
        assert f.read() == b'abc'
    assert util.open_url(str(p), return_filename=True) == str(p)
    with pytest.raises(dnnlib.UserError, match='--network: no such file'):
        util.open_url(str(tmp_path / 'missing.pkl'), flag='--network')

def test_open_url_offline_names_the_flag(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError('network unreachable')
    monkeypatch.setattr(util.urllib.request, 'urlopen', refuse)
    with pytest.raises(dnnlib.UserError, match=r'cannot download .*pass a local file with --network'):
        util.open_url('https://example.com/ffhq.pkl', cache_dir=str(tmp_path), num_attempts=2, flag='--network')

def test_open_url_download_is_cached(tmp_path, monkeypatch):
    calls = []
    class Res(io.BytesIO):
        def __enter__(self): return self
        def __exit__(self, *a): return False
    def fake(url, timeout=None):
        calls.append(url)
        return Res(b'payload')
    monkeypatch.setattr(util.urllib.request, 'urlopen', fake)
    url = 'https://example.com/nets/a.pkl'
    for _ in range(2):
        with util.open_url(url, cache_dir=str(tmp_path)) as f:
            assert f.read() == b'payload'
    assert calls == [url]
    assert [n.endswith('_a.pkl') for n in os.listdir(tmp_path)] == [True]

def test_cache_dir_order(monkeypatch, tmp_path):
    monkeypatch.setattr(util, '_dnnlib_cache_dir', None)
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path))
    assert util.make_cache_dir_path('downloads') == os.path.join(str(tmp_path), 'downloads')
    util.set_cache_dir('/elsewhere')
    try:
        assert util.make_cache_dir_path('x') == os.path.join('/elsewhere', 'x')
    finally:
        util.set_cache_dir(None)

def test_format_time():
    assert util.format_time(42) == '42s'
    assert util.format_time(185) == '3m 05s'
    assert util.format_time(7300) == '2h 01m 40s'
    assert util.format_time(97200) == '1d 03h 00m'

def test_logger_tees_to_file(tmp_path, capsys):
    log = tmp_path / 'log.txt'
    with util.Logger(str(log), 'a'):
        print('hello log')
    assert 'hello log' in log.read_text()
    assert 'hello log' in capsys.readouterr().out

#----------------------------------------------------------------------------
# atomic_write: all or nothing.

def _listing(folder):
    return sorted(os.listdir(folder))

def test_atomic_write_replaces_on_success_with_usual_permissions(tmp_path):
    path = tmp_path / 'out.bin'
    path.write_bytes(b'old')
    with util.atomic_write(path) as f:
        f.write(b'new')
        assert path.read_bytes() == b'old' # not visible until the block ends
    assert path.read_bytes() == b'new' and _listing(tmp_path) == ['out.bin']
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)
    with util.atomic_write(tmp_path / 'text.json', 'w', fsync=True) as f:
        f.write('{"ü": 1}\n')
    assert (tmp_path / 'text.json').read_text(encoding='utf-8') == '{"ü": 1}\n'

@pytest.mark.parametrize('exc', [RuntimeError('disk full'), KeyboardInterrupt()])
def test_atomic_write_leaves_nothing_on_error(tmp_path, exc):
    path = tmp_path / 'out.bin'
    path.write_bytes(b'old')
    with pytest.raises(type(exc)):
        with util.atomic_write(path) as f:
            f.write(b'half')
            raise exc
    assert path.read_bytes() == b'old' and _listing(tmp_path) == ['out.bin']
    with pytest.raises(type(exc)):
        with util.atomic_write(tmp_path / 'new.bin') as f:
            raise exc
    assert _listing(tmp_path) == ['out.bin']

def test_atomic_write_directory(tmp_path):
    dest = tmp_path / 'dataset'
    with util.atomic_write(dest, mode='dir') as tmp_dir:
        (tmp_path / 'dataset').exists() and pytest.fail('dest must not exist before the block ends')
        with open(os.path.join(tmp_dir, 'a.txt'), 'w') as f:
            f.write('a')
    assert _listing(dest) == ['a.txt'] and _listing(tmp_path) == ['dataset']
    dest2 = tmp_path / 'empty'
    dest2.mkdir()
    with pytest.raises(ValueError):
        with util.atomic_write(dest2, mode='dir') as tmp_dir:
            open(os.path.join(tmp_dir, 'b.txt'), 'w').close()
            raise ValueError('stop')
    assert _listing(dest2) == [] and _listing(tmp_path) == ['dataset', 'empty']
    with pytest.raises(ValueError, match="mode must be"):
        with util.atomic_write(tmp_path / 'x', mode='a'):
            pass
