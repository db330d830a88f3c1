"""Tests for editing_directions (fingerprint, Direction.apply, registry, GANSpace, InterfaceGAN, import).

References are independent of the code under test: e4e's application rules re-computed with
NumPy loops in float64 from the formulas in shared/fixtures/SOURCES.md, PCA by numpy.linalg.eigh
of the covariance (the code uses an SVD), InterfaceGAN against a planted linear attribute, the
fingerprint against a re-implementation of its documented definition, and the real e4e direction
files (shared/fixtures/directions) read with torch.load as SOURCES.md describes their layouts.
"""

import copy
import hashlib
import json
import os

import numpy as np
import pytest
import torch

import editing_directions as ed
from stylegan2_ada_pytorch import legacy, testing
from stylegan2_ada_pytorch.torch_utils import misc

# The layouts SOURCES.md states for every file of shared/fixtures/directions.
FIXTURE_LAYOUTS = {
    'age.pt':       ('interfacegan', 'W', [1, 512]),
    'smile.pt':     ('interfacegan', 'W', [1, 512]),
    'pose.pt':      ('interfacegan', 'W+', [1, 18, 512]),
    'ffhq_pca.pt':  ('ganspace', 'W', [80, 1, 512]),
    'cars_pca.pt':  ('ganspace', 'W', [80, 1, 512]),
}

#----------------------------------------------------------------------------
# Fixtures and helpers.

@pytest.fixture(scope='module')
def tiny_G():
    return testing.tiny_generator()

@pytest.fixture(scope='module')
def G512():
    """A generator with the FFHQ config-f W layout (w_dim 512, 18 rows) but tiny synthesis channels."""
    return testing.tiny_generator(z_dim=512, w_dim=512, img_resolution=1024, synthesis_kwargs=dict(channel_base=2048, channel_max=8))

@pytest.fixture(scope='module')
def directions_dir(fixtures_dir):
    path = fixtures_dir / 'directions'
    return path

def _raw(path):
    return torch.load(path, weights_only=True, map_location='cpu')

def _mapped_w(G, num, seed):
    # Independent of editing_directions.sampling: the toolkit convention, z from RandomState(seed).
    z = torch.from_numpy(np.random.RandomState(seed).randn(num, G.z_dim)).float()
    with torch.no_grad():
        return G.mapping(z, None)[:, 0].double().numpy()

def _reference_fingerprint(G):
    # The definition written in generator_fingerprint's docstring, re-implemented here.
    m = G.mapping
    h = hashlib.sha256(b'gradstyle-mapping-fingerprint/1\n')
    h.update(f'dims:{m.z_dim},{m.c_dim},{m.w_dim},{m.num_layers}\n'.encode())
    for idx in range(m.num_layers):
        fc = getattr(m, f'fc{idx}')
        h.update(f'layer:fc{idx}:{fc.activation}:{float(fc.weight_gain)!r}:{float(fc.bias_gain)!r}\n'.encode())
    for name in sorted(m.state_dict()):
        a = m.state_dict()[name].detach().cpu().float().numpy().astype('<f4')
        h.update(f'tensor:{name}:{list(a.shape)}\n'.encode())
        h.update(a.tobytes())
    return h.hexdigest()

#----------------------------------------------------------------------------
# Fingerprint.

def test_fingerprint_matches_documented_definition(tiny_G):
    assert ed.generator_fingerprint(tiny_G) == _reference_fingerprint(tiny_G)
    assert ed.generator_fingerprint(tiny_G.mapping) == _reference_fingerprint(tiny_G)

def test_fingerprint_stable_across_pickle_copy_dtype(tiny_G, tmp_path):
    fp = ed.generator_fingerprint(tiny_G)
    path = tmp_path / 'tiny.pkl'
    legacy.save_network_pkl(dict(G=tiny_G, D=None, G_ema=tiny_G), str(path))
    loaded = legacy.load_network_pkl(str(path))['G_ema']
    assert ed.generator_fingerprint(loaded) == fp
    assert ed.generator_fingerprint(copy.deepcopy(tiny_G).double()) == fp
    fp16 = testing.tiny_generator(synthesis_kwargs=dict(num_fp16_res=2))
    misc.copy_params_and_buffers(tiny_G, fp16, require_all=True)
    assert ed.generator_fingerprint(fp16) == fp

def test_fingerprint_ignores_synthesis_and_injectors(tiny_G):
    fp = ed.generator_fingerprint(tiny_G)
    G = copy.deepcopy(tiny_G)
    with torch.no_grad():
        G.synthesis.b8.conv0.weight.add_(1.0)
    assert ed.generator_fingerprint(G) == fp
    with G.synthesis.register_injector('b16', testing.ZeroConvInjector(16)):
        assert ed.generator_fingerprint(G) == fp
    G_inj = testing.tiny_generator(synthesis_kwargs=dict(injector_kwargs={'b16': [testing.zero_conv_spec(16)]}))
    G_inj.mapping.load_state_dict(tiny_G.mapping.state_dict())
    assert ed.generator_fingerprint(G_inj) == fp

@pytest.mark.parametrize('change', ['weight', 'bias', 'w_avg', 'lr_multiplier'])
def test_fingerprint_changes_with_mapping(tiny_G, change):
    G = copy.deepcopy(tiny_G)
    with torch.no_grad():
        if change == 'weight':
            G.mapping.fc1.weight[0, 0] += 1e-6
        elif change == 'bias':
            G.mapping.fc0.bias[3] += 1e-6
        elif change == 'w_avg':
            G.mapping.w_avg[0] += 1e-6
        else:
            G.mapping.fc0.weight_gain *= 2
    assert ed.generator_fingerprint(G) != ed.generator_fingerprint(tiny_G)

#----------------------------------------------------------------------------
# Import of the real e4e files.

def test_fixture_folder_holds_the_documented_files(directions_dir):
    assert sorted(os.listdir(directions_dir)) == sorted(FIXTURE_LAYOUTS)

@pytest.mark.parametrize('file_name', sorted(FIXTURE_LAYOUTS))
def test_import_reads_fixture(directions_dir, G512, file_name):
    kind, space, shape = FIXTURE_LAYOUTS[file_name]
    raw = _raw(directions_dir / file_name)
    dirs = ed.import_direction_file(directions_dir / file_name, 'x', G512, generator_label='g512')
    fp = ed.generator_fingerprint(G512)
    assert all(d.kind == kind and d.space == space and d.fingerprint == fp and d.generator == 'g512' for d in dirs)
    if kind == 'ganspace':
        assert list(raw['comp'].shape) == shape and list(raw['mean'].shape) == [1, 512] and list(raw['std'].shape) == [80]
        assert [d.name for d in dirs] == [f'x_pc{k}' for k in range(80)]
        for k in (0, 41, 79):
            assert torch.equal(dirs[k].vector, raw['comp'][k]) and torch.equal(dirs[k].mean, raw['mean'])
            assert dirs[k].std == float(raw['std'][k]) and dirs[k].component == k
    else:
        assert len(dirs) == 1 and list(dirs[0].vector.shape) == shape == list(raw.shape)
        assert torch.equal(dirs[0].vector, raw)
        assert 'sha256' in dirs[0].source and file_name in dirs[0].source

def test_import_single_ganspace_component_with_layers(directions_dir, G512):
    [d] = ed.import_direction_file(directions_dir / 'ffhq_pca.pt', 'x33', G512, component=33, layers=(4, 6), default_alpha=-12)
    raw = _raw(directions_dir / 'ffhq_pca.pt')
    assert d.name == 'x33' and d.layers == (4, 6) and d.default_alpha == -12
    assert torch.equal(d.vector, raw['comp'][33]) and d.std == float(raw['std'][33])

def test_import_checks_generator_shapes(directions_dir, tiny_G):
    G14 = testing.tiny_generator(z_dim=512, w_dim=512, img_resolution=256, synthesis_kwargs=dict(channel_base=2048, channel_max=8))
    with pytest.raises(ed.DirectionError, match=r"direction 'pose' has 18 rows, the generator has 14"):
        ed.import_direction_file(directions_dir / 'pose.pt', 'pose', G14)
    with pytest.raises(ed.DirectionError, match=r"direction 'age' has width 512, the generator has w_dim 32"):
        ed.import_direction_file(directions_dir / 'age.pt', 'age', tiny_G)
    [age] = ed.import_direction_file(directions_dir / 'age.pt', 'age', G14)     # a W direction fits any num_ws
    assert age.space == 'W'

def test_import_rejects_wrong_kind_and_bad_files(directions_dir, G512, tmp_path):
    with pytest.raises(ed.DirectionError, match='not a single interfacegan vector'):
        ed.import_direction_file(directions_dir / 'ffhq_pca.pt', 'x', G512, kind='interfacegan')
    with pytest.raises(ed.DirectionError, match='not a GANSpace dict'):
        ed.import_direction_file(directions_dir / 'age.pt', 'x', G512, kind='ganspace')
    bad = tmp_path / 'bad.pt'
    bad.write_bytes(b'not a torch file')
    with pytest.raises(ed.DirectionError, match='bad.pt: not a readable torch file'):
        ed.import_direction_file(bad, 'x', G512)
    broken = tmp_path / 'broken.pt'
    torch.save(dict(mean=torch.zeros(1, 512), comp=torch.zeros(3, 1, 512)), broken)
    with pytest.raises(ed.DirectionError, match='missing std'):
        ed.import_direction_file(broken, 'x', G512)

def test_import_npy_boundary(G512, tmp_path):
    vec = np.random.RandomState(0).randn(1, 512).astype(np.float32)
    np.save(tmp_path / 'boundary_smiling.npy', vec)
    [d] = ed.import_direction_file(tmp_path / 'boundary_smiling.npy', 'smiling', G512)
    assert d.space == 'W' and np.array_equal(d.vector.numpy(), vec)

#----------------------------------------------------------------------------
# e4e's application rules against NumPy.

def _random_ws(num, rows, dim, seed):
    return np.random.RandomState(seed).randn(num, rows, dim)

@pytest.mark.parametrize('layers', [(0, None), (3, 7)])
def test_interfacegan_w_rule(directions_dir, layers):
    vec = _raw(directions_dir / 'age.pt')
    d = ed.Direction('age', 'interfacegan', vec, layers=layers)
    ws = _random_ws(3, 18, 512, 0)
    out = d.apply(torch.from_numpy(ws).float(), alpha=-2.5).double().numpy()
    ref = ws.copy()
    start, end = layers[0], layers[1] or 18
    for n in range(3):
        for r in range(start, end):
            ref[n, r] += -2.5 * vec[0].double().numpy()
    print('interfacegan W max abs err', np.abs(out - ref).max())
    assert np.abs(out - ref).max() < 1e-5
    assert np.array_equal(out[:, :start], ws[:, :start].astype(np.float32))

@pytest.mark.parametrize('source', ['pose.pt', 'random'])
@pytest.mark.parametrize('layers', [(0, None), (5, 12)])
def test_interfacegan_wplus_rule_and_alpha_per_sample(directions_dir, layers, source):
    # pose.pt's 18 rows happen to be identical, so a random W+ direction checks the row pairing.
    vec = _raw(directions_dir / 'pose.pt')[0].double().numpy() if source == 'pose.pt' else np.random.RandomState(7).randn(18, 512)
    d = ed.Direction('pose', 'interfacegan', vec[None].astype(np.float32), layers=layers, default_alpha=1.5)
    ws = _random_ws(4, 18, 512, 1)
    alphas = np.array([-3.0, 0.0, 1.0, 4.5])
    rows = range(layers[0], layers[1] or 18)
    for alpha, out in [(alphas, d.apply(torch.from_numpy(ws).float(), alpha=torch.tensor(alphas))),
                       (np.full(4, 1.5), d.apply(torch.from_numpy(ws).float()))]:
        ref = ws.copy()
        for n in range(4):
            for r in rows:                              # row r of the direction goes to row r of the code
                ref[n, r] += alpha[n] * vec[r]
        assert np.abs(out.double().numpy() - ref).max() < 1e-5

@pytest.mark.parametrize('k, layers, strength', [(0, (0, 18), 5.0), (33, (4, 6), -12.0), (12, (2, None), 0.0)])
def test_ganspace_rule(directions_dir, k, layers, strength):
    pca = {key: v.double().numpy() for key, v in _raw(directions_dir / 'ffhq_pca.pt').items()}
    d = ed.Direction('pc', 'ganspace', pca['comp'][k].astype(np.float32), layers=layers, mean=pca['mean'].astype(np.float32), std=pca['std'][k])
    ws = _random_ws(3, 18, 512, 2) * 0.5 + pca['mean'][None]
    ws_t = torch.from_numpy(ws).float()
    out = d.apply(ws_t, alpha=strength).double().numpy()
    ref = ws_t.double().numpy().copy()
    comp, mean, std = pca['comp'][k][0], pca['mean'][0], pca['std'][k]
    for n in range(3):                                  # SOURCES.md: c from the first row, delta = (s - c) * comp * std
        c = np.dot(ref[n, 0] - mean, comp) / std
        for r in range(layers[0], layers[1] or 18):
            ref[n, r] += (strength - c) * comp * std
    err = np.abs(out - ref).max()
    print(f'ganspace k={k} max abs err {err:.2e}')
    assert err < 1e-4
    # The strength SETS the coordinate: every edited row now sits at `strength` along comp if row 0 was edited.
    if layers[0] == 0:
        coords = (out[:, layers[0]] - mean) @ comp / std
        assert np.abs(coords - strength).max() < 1e-3

def test_apply_leaves_input_and_checks_shapes(directions_dir):
    d = ed.Direction('pose', 'interfacegan', _raw(directions_dir / 'pose.pt'))
    ws = torch.zeros(2, 18, 512)
    d.apply(ws, alpha=1)
    assert torch.count_nonzero(ws) == 0
    with pytest.raises(ed.DirectionError, match="direction 'pose' has 18 rows, the generator has 14"):
        d.apply(torch.zeros(2, 14, 512))
    with pytest.raises(ed.DirectionError, match='expected W\\+ codes'):
        d.apply(torch.zeros(18, 512))
    with pytest.raises(ed.DirectionError, match='one value per code'):
        d.apply(ws, alpha=torch.ones(3))

def test_direction_validation():
    with pytest.raises(ed.DirectionError, match="unknown kind 'pca'"):
        ed.Direction('x', 'pca', torch.zeros(1, 8))
    with pytest.raises(ed.DirectionError, match=r'expected shape \[1, w_dim\]'):
        ed.Direction('x', 'custom', torch.zeros(2, 8))
    with pytest.raises(ed.DirectionError, match='needs mean and std'):
        ed.Direction('x', 'ganspace', torch.zeros(1, 8))
    with pytest.raises(ed.DirectionError, match='exceeds its 4 rows'):
        ed.Direction('x', 'custom', torch.zeros(1, 4, 8), layers=(0, 6))
    d = ed.Direction('x', 'custom', torch.ones(1, 8), layers=(2, 10))
    with pytest.raises(ed.DirectionError, match='does not fit a generator with 8 W\\+ rows'):
        d.apply(torch.zeros(1, 8, 8))

#----------------------------------------------------------------------------
# GANSpace.

def test_ganspace_matches_eigh_of_covariance(tiny_G):
    num, K = 3000, 10
    dirs = ed.compute_ganspace(tiny_G, num_samples=num, num_components=K, seed=5)
    w = _mapped_w(tiny_G, num, seed=5)
    evals, evecs = np.linalg.eigh(np.cov(w, rowvar=False))
    evals, evecs = evals[::-1], evecs[:, ::-1]
    comps = np.concatenate([d.vector.double().numpy() for d in dirs])
    std = np.array([d.std for d in dirs])
    gram_err = np.abs(comps @ comps.T - np.eye(K)).max()
    std_err = np.abs(std - np.sqrt(evals[:K])).max() / np.sqrt(evals[0])
    print(f'ganspace: orthonormality err {gram_err:.1e}, rel std err {std_err:.1e}, std {np.round(std, 3)}')
    assert gram_err < 1e-5
    assert std_err < 1e-5
    assert np.all(np.diff(std) <= 0)
    assert np.abs(dirs[0].mean.double().numpy()[0] - w.mean(axis=0)).max() < 1e-5
    gaps = [min(evals[k - 1] - evals[k] if k > 0 else np.inf, evals[k] - evals[k + 1]) / evals[0] for k in range(K)]
    gaps = np.array(gaps)
    for k in range(K):
        if gaps[k] > 1e-2:                      # well-separated eigenvalues: the vector is defined up to sign
            assert abs(abs(comps[k] @ evecs[:, k]) - 1) < 1e-4, k
    assert np.sum(gaps > 1e-2) >= K // 2
    assert all(d.fingerprint == ed.generator_fingerprint(tiny_G) and d.kind == 'ganspace' for d in dirs)
    assert [d.name for d in dirs] == [f'pc{k}' for k in range(K)]

def test_ganspace_rejects_too_many_components(tiny_G):
    with pytest.raises(ed.DirectionError, match='between 1 and 32'):
        ed.compute_ganspace(tiny_G, num_samples=100, num_components=33)

#----------------------------------------------------------------------------
# InterfaceGAN.

def _planted(G, num, seed, noise=0.05):
    w = _mapped_w(G, num, seed)
    rnd = np.random.RandomState(seed + 100)
    n_true = rnd.randn(G.w_dim)
    n_true /= np.linalg.norm(n_true)
    proj = (w - w.mean(axis=0)) @ n_true
    return w, n_true, proj + noise * proj.std() * rnd.randn(num)

def test_interfacegan_recovers_planted_attribute_from_latents(tiny_G):
    w, n_true, scores = _planted(tiny_G, 4000, seed=3)
    # ratio 0.5 keeps the codes near the boundary, which pins the normal down; with only the
    # extremes (small ratio) many planes separate the classes and the cosine drops (0.87 at 0.1).
    d = ed.compute_interfacegan(tiny_G, scores, 'planted', w=w, ratio=0.5, val_fraction=0.3)
    cos = float(d.vector[0].double().numpy() @ n_true)
    print(f'interfacegan: held-out accuracy {d.info["val_accuracy"]:.4f}, cosine with planted normal {cos:.4f}')
    assert d.info['val_accuracy'] > 0.95
    assert cos > 0.98
    assert abs(float(d.vector.norm()) - 1) < 1e-6 and d.space == 'W' and d.kind == 'interfacegan'
    assert d.info['num_positive'] == d.info['num_negative'] == 2000 and d.info['num_val'] == 1200

def test_interfacegan_from_seeds(tiny_G):
    seeds = list(range(1500))
    w = np.concatenate([_mapped_w_seed(tiny_G, s) for s in seeds])
    rnd = np.random.RandomState(9)
    n_true = rnd.randn(tiny_G.w_dim)
    n_true /= np.linalg.norm(n_true)
    scores = w @ n_true + 0.02 * rnd.randn(len(seeds))
    d = ed.compute_interfacegan(tiny_G, scores, 'planted', seeds=seeds, ratio=0.5)
    cos = float(d.vector[0].double().numpy() @ n_true)
    print(f'interfacegan (seeds): held-out accuracy {d.info["val_accuracy"]:.4f}, cosine {cos:.4f}')
    assert d.info['val_accuracy'] > 0.95 and cos > 0.95

def _mapped_w_seed(G, seed):
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    with torch.no_grad():
        return G.mapping(z, None)[:, 0].double().numpy()

def test_interfacegan_random_labels_are_not_separable(tiny_G):
    # The held-out accuracy must be able to fail: scores unrelated to w give about chance.
    w = _mapped_w(tiny_G, 4000, seed=4)
    scores = np.random.RandomState(11).randn(4000)
    d = ed.compute_interfacegan(tiny_G, scores, 'noise', w=w, ratio=0.2)
    print(f'interfacegan (random labels): held-out accuracy {d.info["val_accuracy"]:.3f}')
    assert d.info['val_accuracy'] < 0.7

def test_interfacegan_input_errors(tiny_G, tmp_path):
    w = _mapped_w(tiny_G, 100, seed=0)
    with pytest.raises(ed.DirectionError, match='99 scores for 100 latent codes'):
        ed.compute_interfacegan(tiny_G, np.zeros(99), 'x', w=w)
    with pytest.raises(ed.DirectionError, match='need at least 4'):
        ed.compute_interfacegan(tiny_G, np.arange(100.0), 'x', w=w, ratio=0.01)
    with pytest.raises(ed.DirectionError, match='exactly one'):
        ed.compute_interfacegan(tiny_G, np.arange(100.0), 'x')
    csv_path = tmp_path / 's.csv'
    csv_path.write_text('seed,smile\n0,0.5\n1,oops\n')
    with pytest.raises(ed.DirectionError, match='s.csv: line 3: no number'):
        ed.read_scores(csv_path)
    plus = tmp_path / 'wplus.npy'
    np.save(plus, np.random.RandomState(0).randn(5, 8, 32))
    with pytest.raises(ed.DirectionError, match='rows differ'):
        ed.read_latents(plus)

def test_read_scores_csv_and_npy(tmp_path):
    (tmp_path / 'a.csv').write_text('seed,smile,age\n0,0.5,30\n1,-1.25,41\n')
    assert ed.read_scores(tmp_path / 'a.csv').tolist() == [30, 41]
    assert ed.read_scores(tmp_path / 'a.csv', column='smile').tolist() == [0.5, -1.25]
    (tmp_path / 'b.csv').write_text('0.1\n0.2\n\n0.3\n')
    assert ed.read_scores(tmp_path / 'b.csv').tolist() == [0.1, 0.2, 0.3]
    np.save(tmp_path / 'c.npy', np.array([[1.0], [2.0]]))
    assert ed.read_scores(tmp_path / 'c.npy').tolist() == [1.0, 2.0]

#----------------------------------------------------------------------------
# Registry and resolve.

def test_registry_round_trip(directions_dir, G512, tmp_path):
    dirs = ed.import_direction_file(directions_dir / 'pose.pt', 'pose', G512, generator_label='g512')
    dirs += ed.import_direction_file(directions_dir / 'ffhq_pca.pt', 'smile', G512, component=33, layers=(4, 6), default_alpha=-12)
    paths = ed.save_directions(dirs, tmp_path, dataset='FFHQ 1024')
    assert sorted(os.path.relpath(p, tmp_path) for p in paths) == ['ffhq-1024_w/smile.npy', 'ffhq-1024_wplus/pose.npy']
    manifest = json.loads((tmp_path / 'ffhq-1024_w' / 'manifest.json').read_text())
    entry = manifest['directions']['smile']
    assert manifest['format'] == 'gradstyle-directions/1'
    assert entry['kind'] == 'ganspace' and entry['layers'] == [4, 6] and entry['shape'] == [1, 512] and entry['component'] == 33
    assert entry['fingerprint'] == ed.generator_fingerprint(G512)
    assert np.load(tmp_path / 'ffhq-1024_w' / entry['mean_file']).shape == (1, 512)
    loaded = {d.name: d for d in ed.list_directions([tmp_path])}
    assert set(loaded) == {'pose', 'smile'}
    for d in dirs:
        e = loaded[d.name]
        assert torch.equal(e.vector, d.vector) and e.layers == d.layers and e.std == d.std and e.fingerprint == d.fingerprint
    ws = torch.randn(2, 18, 512)
    assert torch.equal(loaded['smile'].apply(ws), dirs[1].apply(ws))

def test_registry_refuses_overwrite_and_bad_names(tiny_G, tmp_path):
    d = ed.Direction('tilt', 'custom', torch.randn(1, 32), fingerprint=ed.generator_fingerprint(tiny_G))
    ed.save_directions([d], tmp_path, 'tiny')
    with pytest.raises(ed.DirectionError, match="'tilt' already exists"):
        ed.save_directions([d], tmp_path, 'tiny')
    ed.save_directions([d], tmp_path, 'tiny', overwrite=True)
    with pytest.raises(ed.DirectionError, match='not valid'):
        ed.save_directions([ed.Direction('Bad Name', 'custom', torch.randn(1, 32))], tmp_path, 'tiny')

def test_registry_reports_broken_files(tiny_G, tmp_path):
    d = ed.Direction('tilt', 'custom', torch.randn(1, 32))
    ed.save_directions([d], tmp_path, 'tiny')
    np.save(tmp_path / 'tiny_w' / 'tilt.npy', np.zeros((1, 31), np.float32))
    with pytest.raises(ed.DirectionError, match=r'tilt.npy: shape \[1, 31\] differs from the manifest'):
        ed.list_directions([tmp_path])
    manifest_path = tmp_path / 'tiny_w' / 'manifest.json'
    manifest = json.loads(manifest_path.read_text())
    np.save(tmp_path / 'tiny_w' / 'tilt.npy', np.zeros((1, 32), np.float32))
    manifest['directions']['tilt']['kind'] = 'bogus'
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ed.DirectionError, match=r"manifest.json: direction 'tilt': unknown kind 'bogus'"):
        ed.list_directions([tmp_path])
    manifest['directions']['tilt'].update(kind='custom', layers=3)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ed.DirectionError, match=r"manifest.json: direction 'tilt': "):
        ed.list_directions([tmp_path])
    manifest_path.write_text('{"format": "other"}')
    with pytest.raises(ed.DirectionError, match='manifest.json: not a gradstyle-directions/1 manifest'):
        ed.list_directions([tmp_path])

def test_resolve_mismatch_names_both_and_force(tiny_G, tmp_path):
    other = testing.tiny_generator(seed=1)
    d = ed.Direction('tilt', 'custom', torch.randn(1, 32), fingerprint=ed.generator_fingerprint(tiny_G), generator='tiny-a.pkl')
    ed.save_directions([d], tmp_path, 'tiny')
    assert ed.resolve('tilt', tiny_G, [tmp_path]).matches(tiny_G)
    with pytest.raises(ed.FingerprintMismatchError) as info:
        ed.resolve('tilt', other, [tmp_path], generator_label='tiny-b.pkl')
    msg = str(info.value)
    assert 'tiny-a.pkl' in msg and ed.short_fingerprint(d.fingerprint) in msg
    assert 'tiny-b.pkl' in msg and ed.short_fingerprint(ed.generator_fingerprint(other)) in msg and '\n' not in msg
    forced = ed.resolve('tilt', other, [tmp_path], force=True)
    assert torch.equal(forced.vector, d.vector) and not forced.matches(other)
    with pytest.raises(ed.DirectionError, match="no direction named 'nope'"):
        ed.resolve('nope', tiny_G, [tmp_path])

def test_resolve_picks_the_matching_generator_and_groups(tiny_G, tmp_path):
    other = testing.tiny_generator(seed=1)
    a = ed.Direction('tilt', 'custom', torch.ones(1, 32), fingerprint=ed.generator_fingerprint(other))
    b = ed.Direction('tilt', 'custom', -torch.ones(1, 32), fingerprint=ed.generator_fingerprint(tiny_G))
    ed.save_directions([a], tmp_path / 'first', 'other')
    ed.save_directions([b], tmp_path / 'second', 'tiny')
    dirs = [tmp_path / 'first', tmp_path / 'second']
    assert float(ed.resolve('tilt', tiny_G, dirs).vector[0, 0]) == -1
    assert float(ed.resolve('tilt', other, dirs).vector[0, 0]) == 1
    assert float(ed.resolve('other_w/tilt', tiny_G, dirs, force=True).vector[0, 0]) == 1
    with pytest.raises(ed.FingerprintMismatchError):
        ed.resolve('other_w/tilt', tiny_G, dirs)

def test_resolve_unbound_and_shape_check_even_with_force(tiny_G, tmp_path):
    ed.save_directions([ed.Direction('free', 'custom', torch.randn(1, 32))], tmp_path, 'x')
    with pytest.raises(ed.FingerprintMismatchError, match='made for no generator \\(unbound\\)'):
        ed.resolve('free', tiny_G, [tmp_path])
    ed.save_directions([ed.Direction('wide', 'custom', torch.randn(1, 64))], tmp_path, 'x')
    with pytest.raises(ed.DirectionError, match="has width 64, the generator has w_dim 32"):
        ed.resolve('wide', tiny_G, [tmp_path], force=True)

def test_default_registry_dirs_use_env(monkeypatch, tmp_path):
    monkeypatch.setenv(ed.ENV_VAR, str(tmp_path / 'user'))
    dirs = ed.default_registry_dirs([tmp_path / 'extra'])
    assert dirs == [str(tmp_path / 'extra'), str(tmp_path / 'user'), ed.shipped_registry_dir()]

#----------------------------------------------------------------------------

def test_binarise_rest_negatives_sample_all_codes_outside_the_top():
    scores = np.random.RandomState(4).randn(1000)
    order = np.argsort(scores)
    pos, neg = ed.interfacegan.binarise(scores, 0.1)
    assert sorted(pos) == sorted(order[-100:]) and sorted(neg) == sorted(order[:100])          # InterfaceGAN: top and bottom
    pos_r, neg_r = ed.interfacegan.binarise(scores, 0.1, negatives='rest', seed=0)
    assert sorted(pos_r) == sorted(pos) and len(neg_r) == 100 and len(set(neg_r)) == 100
    assert not set(neg_r) & set(pos_r)
    rank = np.empty(1000, int)
    rank[order] = np.arange(1000)
    # a uniform sample of the 900 codes below the top: about a third from each third of them (binomial sd ~4.7)
    thirds = np.bincount(rank[neg_r] // 300, minlength=3)
    assert thirds.min() >= 15, thirds
    assert np.array_equal(neg_r, ed.interfacegan.binarise(scores, 0.1, negatives='rest', seed=0)[1])
    assert not np.array_equal(neg_r, ed.interfacegan.binarise(scores, 0.1, negatives='rest', seed=1)[1])
    with pytest.raises(ed.DirectionError, match='--negatives'):
        ed.interfacegan.binarise(scores, 0.1, negatives='middle')
