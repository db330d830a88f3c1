"""The demo bundle's manifest: every file's sha256 checked at load, paths kept inside the bundle."""

import hashlib
import json
import os

import pytest

from gradstyle_plugin.demo import bundle as db
from stylegan2_ada_pytorch.dnnlib import UserError

ROLES = dict(network='network.pkl', classifier='classifier.pt', directions='directions', images='images', report='eval/report.json')

def _make(root):
    for rel, data in {'network.pkl': b'net', 'classifier.pt': b'clf', 'directions/registry.json': b'{}',
            'images/a.png': b'a', 'images/b.png': b'bb', 'eval/report.json': b'{"x": 1}'}.items():
        os.makedirs(os.path.dirname(os.path.join(root, rel)) or root, exist_ok=True)
        with open(os.path.join(root, rel), 'wb') as f:
            f.write(data)
    return db.write_manifest(root, ROLES, {'note': 'test'})

def test_manifest_hashes_every_file_with_hashlib(tmp_path):
    manifest = _make(tmp_path)
    assert sorted(manifest['files']) == ['classifier.pt', 'directions/registry.json', 'eval/report.json', 'images/a.png',
        'images/b.png', 'network.pkl']
    for rel, entry in manifest['files'].items():
        data = (tmp_path / rel).read_bytes()
        assert entry == dict(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    b = db.load_bundle(tmp_path)
    assert b.path('network') == os.path.join(str(tmp_path), 'network.pkl')
    assert [os.path.basename(p) for p in b.images()] == ['a.png', 'b.png']
    assert b.provenance == {'note': 'test'}

@pytest.mark.parametrize('change', ['modify', 'truncate', 'delete'])
def test_a_changed_file_is_refused_by_name(tmp_path, change):
    _make(tmp_path)
    target = tmp_path / 'images' / 'b.png'
    if change == 'modify':
        target.write_bytes(b'xx')                 # same size, other bytes
    elif change == 'truncate':
        target.write_bytes(b'b')
    else:
        target.unlink()
    with pytest.raises(UserError, match=r'images/b\.png') as info:
        db.load_bundle(tmp_path)
    assert '\n' not in str(info.value)

def test_paths_outside_the_bundle_and_bad_manifests_are_refused(tmp_path):
    _make(tmp_path)
    manifest = json.loads((tmp_path / db.MANIFEST_NAME).read_text())
    manifest['files']['../escape'] = dict(sha256='0' * 64, bytes=1)
    (tmp_path / db.MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(UserError, match='outside the bundle'):
        db.load_bundle(tmp_path)
    (tmp_path / db.MANIFEST_NAME).write_text('{"format": "other"}')
    with pytest.raises(UserError, match='not a gradstyle-demo-bundle/1 manifest'):
        db.load_bundle(tmp_path)
    with pytest.raises(UserError, match='not installed'):
        db.load_bundle(tmp_path / 'nowhere')

def test_resolve_network_maps_only_the_demo_name(tmp_path, monkeypatch):
    _make(tmp_path)
    monkeypatch.setattr(db, 'BUNDLE_DIR', str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert db.resolve_network('demo') == os.path.join(str(tmp_path), 'network.pkl')
    assert db.resolve_network('other.pkl') == 'other.pkl'
