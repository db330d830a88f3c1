"""gradstyle-eval end to end on a briefly trained tiny GradStyle snapshot: all methods in one invocation,
the report's protocol block, figures recomputed here independently, skipped images named, --resume,
--record-alpha-range, the Python API, usage errors.

Snapshot: the small encoder of tests/_tiny_pickles.py first trained here briefly (Adam on the MSE of
G.synthesis(E(x)) against 16 photo crops, 100 steps at CI size; issue 9's encoder training is not
available here), then gradstyle-train's loop (tests/integration/test_gradstyle_training.py) trains the
GRMs/GAMs on top of it for 0.064 kimg (x4 with --full-size). The `e4e` rows are that trained encoder.
Classifier: the gradstyle-classifier/1 network trained here for 60 steps to tell the four source photos apart.
"""

import json
import os
import shutil

import numpy as np
import PIL.Image
import pytest
import skimage.metrics
import torch
from click.testing import CliRunner

import editing_directions as ed
from stylegan2_ada_pytorch import dnnlib, legacy
from gradstyle_plugin import evaluate
from gradstyle_plugin.cli import eval as eval_cli
from gradstyle_plugin.eval.classifier import AttributeClassifier, load_classifier, save_classifier
from gradstyle_plugin.eval.config import setup_eval_config
from gradstyle_plugin.eval.methods import METHODS
from ..integration import test_gradstyle_training as T
from .._tiny_pickles import write_tiny_generator_and_encoder

PHOTOS = ['astronaut', 'coffee', 'chelsea', 'rocket']      # the order of T._photo_crops (image i comes from photo i % 4)

#----------------------------------------------------------------------------

def _train_classifier(path):
    x = torch.from_numpy(np.stack(T._photo_crops(64, seed=1))).permute(0, 3, 1, 2).float() / 127.5 - 1
    y = torch.arange(64) % 4
    torch.manual_seed(0)
    net = AttributeClassifier(img_resolution=32, img_channels=3, num_classes=4, channels=(16, 32), feature_dim=32)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    save_classifier(path, net.eval(), class_names=PHOTOS, attributes={'cat': 'chelsea'})
    return float((net(x).argmax(1) == y).float().mean())

def _train_encoder(G_pkl, E_pkl, x, steps):
    # e4e's reconstruction objective reduced to its L2 term: W+ from E, frozen G, Adam (lr ours).
    with open(G_pkl, 'rb') as f:
        G = legacy.load_network_pkl(f)['G_ema']
    from gradstyle_plugin.train_config import load_encoder
    E = load_encoder(E_pkl).train().requires_grad_(True)
    E.latent_avg.requires_grad_(False)
    opt = torch.optim.Adam([p for p in E.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(steps):
        loss = (G.synthesis(E(x)[0], noise_mode='const') - x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    legacy.save_network_pkl(dict(encoder=E.eval().requires_grad_(False)), E_pkl)

@pytest.fixture(scope='module')
def env(tmp_path_factory, size_scale):
    root = tmp_path_factory.mktemp('eval_env')
    data = root / 'train'
    data.mkdir()
    for i, crop in enumerate(T._photo_crops(16, seed=0)):
        PIL.Image.fromarray(crop).save(data / f'{i:02d}.png')
    write_tiny_generator_and_encoder(str(root))
    x = torch.from_numpy(np.stack(T._photo_crops(16, seed=0))).permute(0, 3, 1, 2).float() / 127.5 - 1
    _train_encoder(str(root / 'G.pkl'), str(root / 'encoder.pkl'), x, steps=round(100 * size_scale / 0.25))
    inputs = dnnlib.EasyDict(data=str(data), G=str(root / 'G.pkl'), encoder=str(root / 'encoder.pkl'))
    T._run(inputs, str(root / 'run'), kimg=0.064 * size_scale / 0.25)
    _data, snap = T._snapshot(str(root / 'run'))
    held = root / 'held_out'
    held.mkdir()
    for i, crop in enumerate(T._photo_crops(6, seed=99)):
        PIL.Image.fromarray(crop).save(held / f'img{i}.png')
    (held / 'broken.png').write_bytes(b'\x89PNG not really')
    (held / 'notes.txt').write_text('not an image')
    with open(snap, 'rb') as f:
        G = legacy.load_network_pkl(f)['G_ema']
    v = torch.randn([1, 32], generator=torch.Generator().manual_seed(3))
    d = ed.Direction('cat', 'interfacegan', v / v.norm(), fingerprint=ed.generator_fingerprint(G), generator='tiny', default_alpha=2.0)
    ed.save_directions([d], str(root / 'reg'), 'tiny')
    accuracy = _train_classifier(str(root / 'clf.pt'))
    assert accuracy > 0.9
    return dnnlib.EasyDict(root=root, snap=snap, held=str(held), reg=str(root / 'reg'), clf=str(root / 'clf.pt'))

def _args(env, outdir, *extra):
    return ['--network', env.snap, '--data', env.held, '--outdir', str(outdir), '--direction', 'cat', '--registry', env.reg,
        '--classifier', env.clf, '--lpips-weights', 'random', '--alpha=-2,0,2', '--project-steps', '10', '--batch', '4', *extra]

@pytest.fixture(scope='module')
def cli_run(env):
    out = env.root / 'out'
    result = CliRunner().invoke(eval_cli.main, _args(env, out, '--record-alpha-range', '--alpha-id-floor', '-1'))
    return out, result

#----------------------------------------------------------------------------

@pytest.mark.integration
@pytest.mark.slow
def test_all_methods_one_invocation(env, cli_run):
    out, result = cli_run
    assert result.exit_code == 1, result.output + result.stderr        # broken.png is skipped: named, exit 1
    assert 'broken.png' in result.stderr and '1 skipped, 0 unscored' in result.stderr
    assert 'Evaluating (methods x images)' in result.output      # the progress bar
    report = json.load(open(out / 'report.json'))
    p = report['protocol']
    assert list(report['methods']) == METHODS
    assert p['images'] == [f'img{i}.png' for i in range(6)] and p['num_images'] == 6
    assert [s['image'] for s in p['skipped']] == ['broken.png'] and 'cannot read' in p['skipped'][0]['reason']
    assert p['ignored_files'] == ['notes.txt'] and p['converted'] == []
    assert p['network']['sha256'] == dnnlib.util.file_sha256(env.snap) and p['resolution'] == 32 and p['seed'] == 0
    assert p['metrics']['id']['source'] == 'classifier features' and p['metrics']['id']['sha256'] == dnnlib.util.file_sha256(env.clf)
    assert p['metrics']['lpips']['weights'] == 'random' and p['metrics']['psnr_range'] == [0.0, 1.0]
    assert p['directions'][0]['alphas'] == [-2.0, 0.0, 2.0] and p['versions']['torch'] == torch.__version__
    assert {'alphas', 'smoothness', 'lec', 'project'} <= set(p['ours'])
    m = report['methods']
    assert m['no-gam']['table1'] == m['grm']['table1'] and m['no-gam']['edits'] == m['grm']['edits']
    assert m['no-grm']['table1'] == m['e4e']['table1'] and m['no-grm']['edits'] == m['e4e']['edits']
    assert set(m['grm']['gam_identity_error'].values()) == {0.0} and min(m['gradstyle']['gam_identity_error'].values()) > 0
    assert m['e4e']['gam_identity_error'] is None
    assert m['gradstyle']['table1']['l2'] < m['e4e']['table1']['l2']          # the trained GRMs reduce the distortion
    assert m['gradstyle']['cost']['parameters'] > m['e4e']['cost']['parameters'] and m['project']['cost']['ms_per_image'] > 0
    for name in METHODS:
        t = m[name]['table1']
        assert t['ms_ssim'] is None and all(t[k] is not None for k in ['l2', 'psnr', 'ssim', 'lpips', 'id', 'fid', 'kid'])
        e = m[name]['edits']['cat']
        assert all(e[k] is not None for k in ['id_plus', 'id_minus', 'attr_plus', 'attr_minus', 'lec', 'smoothness'])
        grid = np.asarray(PIL.Image.open(out / 'samples' / f'{name}.png'))
        assert grid.shape == (4 * 32, 5 * 32, 3)
    md = open(out / 'report.md').read()
    assert '| gradstyle |' in md and 'cat(+) ID' in md and 'broken.png' in md
    assert PIL.Image.open(out / report['plot']).size[0] > 100
    [entry] = [d for d in ed.list_directions([env.reg]) if d.name == 'cat']
    assert entry.info['useful_alpha_range'] == [-2.0, 2.0] and entry.info['alpha_range_method'] == 'gradstyle'
    print(md)

def _rgb01(x_u8):
    return x_u8.astype(np.float64) / 255

@pytest.mark.integration
@pytest.mark.slow
def test_figures_recomputed_independently(env, cli_run):
    out, _result = cli_run
    report = json.load(open(out / 'report.json'))
    with open(env.snap, 'rb') as f:
        data = legacy.load_network_pkl(f)
    G, E = data['G_ema'].eval(), data['encoder'].eval()
    names = report['protocol']['images']
    src = np.stack([np.asarray(PIL.Image.open(os.path.join(env.held, n))) for n in names])
    x = torch.from_numpy(src).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        from gradstyle_plugin.attach import detach_gradstyle
        from gradstyle_plugin import streams
        ws = E(x)[0]
        plain = detach_gradstyle(G).synthesis(ws, noise_mode='const')
        full = streams.run_streams(G, E, x, edit=False).img_rec
    to_u8 = lambda img: (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
    for name, img in [('e4e', plain), ('gradstyle', full)]:
        rec = _rgb01(to_u8(img))
        s = _rgb01(src)
        l2 = np.mean([np.mean((2 * rec[i] - 2 * s[i]) ** 2) for i in range(len(s))])
        psnr = np.mean([skimage.metrics.peak_signal_noise_ratio(s[i], rec[i], data_range=1) for i in range(len(s))])
        ssim = np.mean([skimage.metrics.structural_similarity(s[i], rec[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
            data_range=1, channel_axis=2) for i in range(len(s))])
        t = report['methods'][name]['table1']
        assert t['l2'] == pytest.approx(l2, rel=1e-5) and t['psnr'] == pytest.approx(psnr, rel=1e-5)
        assert abs(t['ssim'] - ssim) < 1e-4
    clf = load_classifier(env.clf)
    emb = lambda a: torch.nn.functional.normalize(clf.features(torch.from_numpy(a).permute(0, 3, 1, 2).float() / 127.5 - 1).double(), dim=1)
    cos = (emb(src) * emb(to_u8(full))).sum(1).mean()
    assert report['methods']['gradstyle']['table1']['id'] == pytest.approx(float(cos), abs=1e-5)
    _check_attribute_records(out, G, E, x, src, clf, to_u8, env.reg)

def _check_attribute_records(out, G, E, x, src, clf, to_u8, registry):
    # GradStyle's per-image attribute records, from the classifier's probabilities in NumPy: the change of an edit is
    # taken from the alpha-0 edit of the same editing stream, the offset is alpha-0 edit minus reconstruction.
    from gradstyle_plugin import streams
    k = clf.class_names.index(clf.attributes['cat'])
    def log_odds(u8):
        p = clf.probabilities(torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 127.5 - 1).double().numpy()[:, k]
        return np.log(p / (1 - p))
    d = ed.resolve('cat', G, [registry])
    with torch.no_grad():
        ws, features = E(x)
        rec, record = streams.reconstruction_stream(G, ws, features)
        residuals = {s: r['F'] for s, r in record.items()}
        zero = streams.editing_stream(G, ws, residuals)[0]
        plus = streams.editing_stream(G, d.apply(ws, 2.0), residuals)[0]
    state = json.load(open(out / 'state' / 'gradstyle.json'))['images']
    got = lambda f: np.array([f(r) for r in state])
    assert np.abs(log_odds(to_u8(zero)) - log_odds(to_u8(rec)) - got(lambda r: r['attr_offset']['cat'])).max() < 2e-3
    assert np.abs(log_odds(to_u8(plus)) - log_odds(to_u8(zero)) - got(lambda r: r['edits']['cat']['2.0']['attr'])).max() < 2e-3
    assert np.abs(log_odds(src) - got(lambda r: r['attr_source']['cat'])).max() < 2e-3
    assert np.all(got(lambda r: r['edits']['cat']['0.0']['attr']) == 0)
    assert np.abs(got(lambda r: r['attr_offset']['cat'])).max() > 1e-3        # the GAM is not the identity: the offset is there to see

@pytest.mark.integration
@pytest.mark.slow
def test_resume(env, cli_run):
    out, _result = cli_run
    again = env.root / 'again'
    shutil.copytree(out, again)
    os.remove(again / 'state' / 'project.json')
    result = CliRunner().invoke(eval_cli.main, _args(env, again, '--resume'))
    assert '--resume: 8 of 9 methods already done' in result.output, result.output
    first, second = json.load(open(out / 'report.json')), json.load(open(again / 'report.json'))
    for name in METHODS:
        assert second['methods'][name]['table1'] == first['methods'][name]['table1'], name
    result = CliRunner().invoke(eval_cli.main, _args(env, again, '--resume', '--project-steps', '11'))
    assert result.exit_code == 2 and '--resume:' in result.stderr and 'other inputs or options' in result.stderr

@pytest.mark.integration
def test_python_api_returns_the_report(env, cli_run):
    out, _result = cli_run
    report = evaluate(env.snap, env.held, methods=['e4e', 'gradstyle'], classifier=env.clf, lpips_weights='random', batch=4, log=lambda s: None)
    cli = json.load(open(out / 'report.json'))
    for name in ['e4e', 'gradstyle']:
        assert report['methods'][name]['table1'] == cli['methods'][name]['table1']
        assert report['methods'][name]['cost']['parameters'] == cli['methods'][name]['cost']['parameters']
    assert report['plot'] is None and list(report['methods']) == ['e4e', 'gradstyle']

@pytest.mark.parametrize('change, message', [
    (dict(methods=['hfgi']), "--methods: unknown method 'hfgi'"),
    (dict(data='nowhere'), '--data: no such file or folder'),
    (dict(classifier='nope.pt'), '--classifier: no such file'),
    (dict(record_alpha_range=True), '--record-alpha-range: needs --direction'),
    (dict(batch=0), '--batch: must be at least 1'),
])
def test_usage_errors_name_the_flag(env, change, message):
    kwargs = dict(network_pkl=env.snap, data=env.held, outdir=str(env.root / 'x'))
    kwargs.update(change)
    with pytest.raises(dnnlib.UserError, match=message.replace('(', r'\(')):
        setup_eval_config(**kwargs)
    assert not os.path.exists(env.root / 'x')

@pytest.mark.integration
def test_unscored_images_are_named_not_dropped(env, monkeypatch, tmp_path):
    # An embedding that comes out NaN for one image (as a broken ID network would): its ID is listed as
    # unscored, the mean is over the other images, and the command exits 1 naming it.
    from gradstyle_plugin.eval import scoring
    real_embed = scoring.Scorer.embed
    def embed(self, x01):
        out = real_embed(self, x01)
        if out is not None and x01.shape[0] == 4:       # the first batch: img0..img3; poison img1
            out[1] = float('nan')
        return out
    monkeypatch.setattr(scoring.Scorer, 'embed', embed)
    result = CliRunner().invoke(eval_cli.main, ['--network', env.snap, '--data', env.held, '--outdir', str(tmp_path), '--methods', 'e4e',
        '--classifier', env.clf, '--batch', '4'])
    assert result.exit_code == 1 and 'img1.png (e4e: id)' in result.stderr, result.output
    report = json.load(open(tmp_path / 'report.json'))
    assert report['methods']['e4e']['unscored'] == [dict(image='img1.png', metric='id')]
    monkeypatch.setattr(scoring.Scorer, 'embed', real_embed)
    clean = evaluate(env.snap, env.held, methods=['e4e'], classifier=env.clf, batch=4, log=lambda s: None)
    per_image = [r for r in json.load(open(tmp_path / 'state' / 'e4e.json'))['images']]
    assert per_image[1]['id'] is None and per_image[0]['id'] is not None
    ids = [r['id'] for r in per_image if r['id'] is not None]
    assert report['methods']['e4e']['table1']['id'] == pytest.approx(float(np.mean(ids)), rel=1e-6)
    assert clean['methods']['e4e']['table1']['id'] != report['methods']['e4e']['table1']['id']

def test_dry_run_prints_the_config(env, tmp_path):
    out = tmp_path / 'dry'
    result = CliRunner().invoke(eval_cli.main, _args(env, out, '--dry-run', '--methods', 'e4e,gradstyle'))
    assert result.exit_code == 0, result.output
    config = json.loads(result.stdout)
    assert config['methods'] == ['e4e', 'gradstyle'] and config['alphas'] == [-2.0, 0.0, 2.0] and config['project_steps'] == 10
    assert not out.exists()

@pytest.mark.integration
def test_resume_within_a_method(env, monkeypatch, tmp_path):
    # Interrupted in gradstyle's second batch: --resume keeps e4e, redoes no finished batch, and gives the clean run's numbers.
    from gradstyle_plugin.eval import run
    real_score = run.score_batch
    calls = []
    def score(method, *args):
        calls.append(method.name)
        if method.name == 'gradstyle' and calls.count('gradstyle') == 2 and not calls_resumed:
            raise RuntimeError('interrupted')
        return real_score(method, *args)
    calls_resumed = False
    monkeypatch.setattr(run, 'score_batch', score)
    opts = dict(methods=['e4e', 'gradstyle'], classifier=env.clf, batch=2, log=lambda s: None, directions=['cat'], registries=[env.reg],
        alpha='-2,0,2')
    with pytest.raises(RuntimeError, match='interrupted'):
        evaluate(env.snap, env.held, outdir=str(tmp_path), **opts)
    assert sorted(os.listdir(tmp_path / 'state')) == ['e4e.features.npy', 'e4e.grid.npy', 'e4e.json', 'e4e.real.npy',
        'gradstyle.partial.features.npy', 'gradstyle.partial.grid.npy', 'gradstyle.partial.json', 'gradstyle.partial.real.npy']
    calls.clear()
    calls_resumed = True
    logs = []
    resumed = evaluate(env.snap, env.held, outdir=str(tmp_path), resume=True, **dict(opts, log=logs.append))
    assert calls == ['gradstyle', 'gradstyle'] and '--resume: gradstyle continues after 2 of 6 images' in logs
    assert not any('partial' in f for f in os.listdir(tmp_path / 'state'))
    clean = evaluate(env.snap, env.held, **opts)
    for name in ['e4e', 'gradstyle']:
        assert resumed['methods'][name]['table1'] == clean['methods'][name]['table1']
        assert resumed['methods'][name]['edits'] == clean['methods'][name]['edits']
