"""gradstyle-directions through click's CliRunner: files written, list output, one-line errors.

The user registry is redirected to a temporary folder ($GRADSTYLE_DIRECTIONS) in every test.
"""

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import editing_directions as ed
from gradstyle_plugin.cli import directions as cli
from stylegan2_ada_pytorch import legacy, testing

#----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def nets(tmp_path_factory):
    root = tmp_path_factory.mktemp('nets')
    specs = dict(tiny=testing.tiny_generator(), other=testing.tiny_generator(seed=1),
        g512=testing.tiny_generator(z_dim=512, w_dim=512, img_resolution=1024, synthesis_kwargs=dict(channel_base=2048, channel_max=8)))
    paths = {}
    for name, G in specs.items():
        paths[name] = str(root / f'{name}.pkl')
        legacy.save_network_pkl(dict(G=G, D=None, G_ema=G), paths[name])
    return paths

@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.setenv(ed.ENV_VAR, str(tmp_path / 'user'))
    return tmp_path / 'user'

@pytest.fixture(scope='module')
def directions_dir(fixtures_dir):
    path = fixtures_dir / 'directions'
    return path

def _invoke(args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)

def _assert_one_line_error(result, *fragments):
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('Error: '), result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])

def _mapped_w(path, num, seed):
    G = legacy.load_network_pkl(path)['G_ema']
    z = torch.from_numpy(np.random.RandomState(seed).randn(num, G.z_dim)).float()
    with torch.no_grad():
        return G, G.mapping(z, None)[:, 0].double().numpy()

#----------------------------------------------------------------------------

@pytest.mark.parametrize('sub', [[], ['ganspace'], ['interfacegan'], ['import'], ['list'], ['show']])
def test_help(sub):
    result = _invoke(sub + ['--help'])
    assert result.exit_code == 0 and 'Usage:' in result.output

def test_ganspace_writes_registry(nets, registry):
    result = _invoke(['ganspace', '--network', nets['tiny'], '--num-samples', 500, '--components', 3, '--layers', '1:5', '--dataset', 'tiny'])
    assert result.exit_code == 0, result.output
    folder = registry / 'tiny_w'
    manifest = json.loads((folder / 'manifest.json').read_text())['directions']
    assert sorted(manifest) == ['pc0', 'pc1', 'pc2']
    assert all(e['kind'] == 'ganspace' and e['layers'] == [1, 5] and e['generator'] == 'tiny.pkl' for e in manifest.values())
    assert {e['mean_file'] for e in manifest.values()} == {manifest['pc0']['mean_file']}
    comps = np.concatenate([np.load(folder / f'pc{k}.npy') for k in range(3)])
    assert np.abs(comps @ comps.T - np.eye(3)).max() < 1e-5
    assert manifest['pc0']['std'] >= manifest['pc1']['std'] >= manifest['pc2']['std']
    assert f'wrote 3 directions to {folder}' in result.output

def test_interfacegan_from_latents_and_csv(nets, registry, tmp_path):
    G, w = _mapped_w(nets['tiny'], 2000, seed=0)
    n_true = np.random.RandomState(1).randn(G.w_dim)
    n_true /= np.linalg.norm(n_true)
    np.save(tmp_path / 'w.npy', w.astype(np.float32))
    scores = w @ n_true
    (tmp_path / 'scores.csv').write_text('id,smile\n' + ''.join(f'{i},{float(s)!r}\n' for i, s in enumerate(scores)))
    result = _invoke(['interfacegan', '--network', nets['tiny'], '--labels', tmp_path / 'scores.csv', '--latents', tmp_path / 'w.npy',
        '--name', 'smile', '--column', 'smile', '--ratio', 0.5, '--registry', tmp_path / 'reg'])
    assert result.exit_code == 0, result.output
    folder = tmp_path / 'reg' / 'tiny_w'
    normal = np.load(folder / 'smile.npy')[0]
    entry = json.loads((folder / 'manifest.json').read_text())['directions']['smile']
    print(f'CLI interfacegan: held-out accuracy {entry["info"]["val_accuracy"]:.4f}, cosine {normal @ n_true:.4f}')
    assert entry['info']['val_accuracy'] > 0.95 and normal @ n_true > 0.98
    assert 'held-out accuracy' in result.output
    assert not registry.exists()                  # --registry was used, not the user registry

def test_interfacegan_rest_negatives(nets, registry, tmp_path):
    G, w = _mapped_w(nets['tiny'], 2000, seed=0)
    n_true = np.random.RandomState(2).randn(G.w_dim)
    n_true /= np.linalg.norm(n_true)
    np.save(tmp_path / 'w.npy', w.astype(np.float32))
    np.save(tmp_path / 'scores.npy', w @ n_true)
    result = _invoke(['interfacegan', '--network', nets['tiny'], '--labels', tmp_path / 'scores.npy', '--latents', tmp_path / 'w.npy',
        '--name', 'top', '--ratio', 0.2, '--negatives', 'rest', '--registry', tmp_path / 'reg'])
    assert result.exit_code == 0, result.output
    entry = json.loads((tmp_path / 'reg' / 'tiny_w' / 'manifest.json').read_text())['directions']['top']
    normal = np.load(tmp_path / 'reg' / 'tiny_w' / 'top.npy')[0]
    print(f'CLI interfacegan --negatives rest: held-out accuracy {entry["info"]["val_accuracy"]:.4f}, cosine {normal @ n_true:.4f}')
    assert entry['info']['negatives'] == 'rest' and 'negatives rest' in entry['source']
    assert entry['info']['num_positive'] == entry['info']['num_negative'] == 400 and normal @ n_true > 0.9

def test_interfacegan_from_seeds_and_npy(nets, registry, tmp_path):
    G = legacy.load_network_pkl(nets['tiny'])['G_ema']
    z = torch.from_numpy(np.concatenate([np.random.RandomState(s).randn(1, G.z_dim) for s in range(400)])).float()
    with torch.no_grad():
        seeds_w = G.mapping(z, None)[:, 0].double().numpy()                 # one z per seed, as --seeds
    np.save(tmp_path / 'scores.npy', seeds_w[:, 3])                        # attribute = coordinate 3 of w
    result = _invoke(['interfacegan', '--network', nets['tiny'], '--labels', tmp_path / 'scores.npy', '--seeds', '0-399',
        '--name', 'coord3', '--ratio', 0.5])
    assert result.exit_code == 0, result.output
    d = ed.resolve('coord3', G)
    assert d.info['negatives'] == 'bottom' and 'negatives bottom' in d.source
    print(f'CLI interfacegan (seeds): held-out accuracy {d.info["val_accuracy"]:.4f}, |n[3]| {abs(float(d.vector[0, 3])):.4f}')
    assert d.info['val_accuracy'] > 0.95 and float(d.vector[0, 3]) > 0.9

def test_import_every_fixture_and_list(nets, registry, directions_dir):
    for file_name in ('age.pt', 'smile.pt', 'pose.pt'):
        name = file_name[:-3]
        result = _invoke(['import', directions_dir / file_name, '--name', name, '--network', nets['g512'], '--dataset', 'ffhq'])
        assert result.exit_code == 0, result.output
    result = _invoke(['import', directions_dir / 'ffhq_pca.pt', '--name', 'ffhq', '--network', nets['g512'], '--dataset', 'ffhq'])
    assert result.exit_code == 0 and 'wrote 80 directions' in result.output
    result = _invoke(['import', directions_dir / 'cars_pca.pt', '--name', 'wheel', '--component', 7, '--layers', '4:6', '--alpha', -8,
        '--network', nets['g512'], '--dataset', 'cars'])
    assert result.exit_code == 0, result.output
    assert np.load(registry / 'ffhq_wplus' / 'pose.npy').shape == (1, 18, 512)
    assert np.array_equal(np.load(registry / 'ffhq_w' / 'age.npy'), torch.load(directions_dir / 'age.pt', weights_only=True).numpy())
    wheel = json.loads((registry / 'cars_w' / 'manifest.json').read_text())['directions']['wheel']
    assert wheel['component'] == 7 and wheel['layers'] == [4, 6] and wheel['default_alpha'] == -8

    listing = _invoke(['list', '--network', nets['g512']])
    assert listing.exit_code == 0
    rows = {line.split()[0]: line.split() for line in listing.output.splitlines()[3:]}
    assert len(rows) == 3 + 80 + 1
    assert rows['ffhq_wplus/pose'][1:5] == ['interfacegan', 'W+', '1x18x512', '0:'] and rows['ffhq_wplus/pose'][-1] == 'yes'
    assert all(r[-1] == 'yes' for r in rows.values())
    listing = _invoke(['list', '--network', nets['tiny']])
    assert all(line.split()[-1] == 'no' for line in listing.output.splitlines()[3:])
    plain = _invoke(['list'])
    assert 'MATCH' not in plain.output and 'ffhq_w/ffhq_pc79' in plain.output

def test_show_mismatch_and_force(nets, registry):
    assert _invoke(['ganspace', '--network', nets['tiny'], '--num-samples', 200, '--components', 2, '--dataset', 'tiny']).exit_code == 0
    ok = _invoke(['show', 'pc1', '--network', nets['tiny']])
    assert ok.exit_code == 0 and 'WARNING' not in ok.output and 'tiny_w/pc1 ganspace' in ok.output
    bad = _invoke(['show', 'pc1', '--network', nets['other']])
    _assert_one_line_error(bad, "'tiny.pkl'", "'other.pkl'", 'fingerprint', '--force')
    forced = _invoke(['show', 'pc1', '--network', nets['other'], '--force'])
    assert forced.exit_code == 0 and 'WARNING: used with --force' in forced.output

def test_bad_input_errors(nets, registry, directions_dir, tmp_path):
    (tmp_path / 's.csv').write_text('1\n2\n3\n')
    (tmp_path / 'junk.pt').write_bytes(b'junk')
    cases = [
        (['ganspace', '--network', tmp_path / 'missing.pkl'], ['--network', 'no such file']),
        (['ganspace', '--network', nets['tiny'], '--components', 40], ['--components', 'w_dim 32']),
        (['ganspace', '--network', nets['tiny'], '--layers', '5:2'], ['--layers']),
        (['ganspace', '--network', nets['tiny'], '--name-prefix', 'PC'], ['--name-prefix']),
        (['interfacegan', '--network', nets['tiny'], '--labels', tmp_path / 'none.csv', '--seeds', '0-2', '--name', 'x'], ['--labels', 'no such file']),
        (['interfacegan', '--network', nets['tiny'], '--labels', tmp_path / 's.csv', '--name', 'x'], ['--latents/--seeds']),
        (['interfacegan', '--network', nets['tiny'], '--labels', tmp_path / 's.csv', '--seeds', '0-9', '--name', 'x'], ['--labels', 's.csv', '3 scores', '10 codes']),
        (['interfacegan', '--network', nets['tiny'], '--labels', tmp_path / 's.csv', '--seeds', '0-2', '--name', 'x', '--ratio', 0.9], ['--ratio']),
        (['interfacegan', '--network', nets['tiny'], '--labels', tmp_path / 's.csv', '--seeds', '0-2', '--name', 'x', '--negatives', 'all'], ['--negatives']),
        (['import', directions_dir / 'pose.pt', '--name', 'pose', '--network', nets['tiny']], ["'pose' has width 512", 'w_dim 32']),
        (['import', tmp_path / 'junk.pt', '--name', 'junk', '--network', nets['tiny']], ['junk.pt', 'not a readable torch file']),
        (['import', tmp_path / 'nothing.pt', '--name', 'x', '--network', nets['tiny']], ['FILE', 'nothing.pt']),
        (['import', directions_dir / 'age.pt', '--name', 'Age!', '--network', nets['g512']], ['--name', 'Age!']),
        (['import', directions_dir / 'age.pt', '--name', 'age', '--component', 3, '--network', nets['g512']], ['--component']),
        (['show', 'nope', '--network', nets['tiny']], ["no direction named 'nope'"]),
    ]
    for args, fragments in cases:
        _assert_one_line_error(_invoke(args), *fragments)

def test_import_refuses_overwrite(nets, registry, directions_dir):
    args = ['import', directions_dir / 'age.pt', '--name', 'age', '--network', nets['g512'], '--dataset', 'ffhq']
    assert _invoke(args).exit_code == 0
    _assert_one_line_error(_invoke(args), "'age' already exists", '--overwrite')
    assert _invoke(args + ['--overwrite']).exit_code == 0

def test_setup_functions_are_pure(nets, tmp_path):
    c = cli.setup_ganspace_config(nets['tiny'], 100, 4, 0, 'pc', '2:', 1.5, None, str(tmp_path), False)
    assert c.layers == (2, None) and c.dataset == 'tiny' and c.registry_dir == str(tmp_path)
    assert not os.listdir(tmp_path)
    assert cli.parse_layers('4:6') == (4, 6) and cli.parse_layers(':') == (0, None)

#----------------------------------------------------------------------------
