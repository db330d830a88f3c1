"""`gradstyle-demo` on the committed bundle: the figures are recomputed here (the networks run on the
bundled held-out images) and compared with the ones the build recorded and with issue 12's acceptance
thresholds; plus the user's own images, `--network demo` in gradstyle-edit, and one-line errors.

The recomputed L2 and SSIM go through gradstyle-eval's metrics, which tests/eval checks against
NumPy/scikit-image; here the figures themselves are checked.
"""

import json
import os
import shutil

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

from gradstyle_plugin.cli import demo as demo_cli
from gradstyle_plugin.cli import edit as edit_cli
from gradstyle_plugin.demo import bundle as db
from gradstyle_plugin.demo.run import MIN_GAIN, MIN_INTENDED
from tests.conftest import DATA

pytestmark = pytest.mark.skipif(not os.path.isfile(os.path.join(db.BUNDLE_DIR, db.MANIFEST_NAME)),
    reason='the demo bundle is not in this checkout (scripts/build_demo_bundle.py writes it)')

#----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def bundle():
    return db.load_bundle()

@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
    """gradstyle-demo with its default options (only --outdir set) -> (exit code, output, summary.json)."""
    out = tmp_path_factory.mktemp('demo') / 'out'
    result = CliRunner().invoke(demo_cli.main, ['--outdir', str(out)])
    summary = json.loads((out / 'summary.json').read_text()) if (out / 'summary.json').is_file() else None
    return result, out, summary

def _committed(bundle):
    with open(bundle.path('demo_summary'), encoding='utf-8') as f:
        return json.load(f)

#----------------------------------------------------------------------------
# The bundle itself.

def test_bundle_is_small_and_checked(bundle):
    total = sum(entry['bytes'] for entry in bundle.files.values())
    assert total <= 25 * 2**20, f'bundle is {total / 2**20:.1f} MB'
    assert bundle.provenance['size'] == 'full'
    assert not [v for v in _strings(bundle.provenance) if os.path.isabs(v)]     # build paths are '<workdir>/...'

def _strings(value):
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []

def test_generator_check_recomputed_from_the_bundled_network(bundle):
    # The bundled network's G_ema is the trained generator (GradStyle leaves it as it was); its stages do
    # nothing without encoder features, so sampling it reproduces the build's generator-check.
    import torch
    from gradstyle_plugin.demo import fashion
    steps = bundle.provenance['steps']
    check = steps['generator-check']
    G = fashion.load_G(bundle.path('network'), 'cpu')
    clf = fashion.load_clf(bundle.path('classifier'), 'cpu')
    _ws, imgs = fashion.sample(G, check['samples'])
    probs = torch.cat([clf.probabilities(x) for x in imgs.split(500)])
    assert float(probs.max(1).values.mean()) == pytest.approx(check['mean_max_prob'], abs=2e-3)
    counts = torch.bincount(probs.argmax(1), minlength=10)
    assert int((counts > 0).sum()) == check['classes_covered'] == 10
    assert np.isfinite(steps['generator']['fid2k_pix'])
    assert steps['classifier']['test_accuracy'] >= 0.85      # a real classifier: the edits are scored with it

def test_generator_quality_meets_the_acceptance(bundle):
    assert bundle.provenance['steps']['generator-check']['mean_max_prob'] >= 0.8

def test_build_eval_meets_the_acceptance_on_the_test_split(bundle):
    with open(bundle.path('report'), encoding='utf-8') as f:
        report = json.load(f)
    assert report['protocol']['num_images'] >= 100 and not report['protocol']['skipped']
    e4e, gs = report['methods']['e4e'], report['methods']['gradstyle']
    assert 1 - gs['table1']['l2'] / e4e['table1']['l2'] >= MIN_GAIN
    assert 1 - (1 - gs['table1']['ssim']) / (1 - e4e['table1']['ssim']) >= MIN_GAIN
    for d in report['protocol']['directions']:
        g, e = gs['edits'][d['name']], e4e['edits'][d['name']]
        assert g['id_plus'] + g['id_minus'] > e['id_plus'] + e['id_minus'], d['name']

def test_build_eval_edits_move_the_attribute_as_intended(bundle):
    # "intended" scores each image on the side it can move to, from the method's own alpha-0 edit
    # (gradstyle_plugin/eval/report.py, _intended; tests/eval/test_intended.py recomputes it by brute force).
    with open(bundle.path('report'), encoding='utf-8') as f:
        report = json.load(f)
    assert report['protocol']['ours']['attr_intended'].startswith('fraction of edits with sign(alpha) * change > 0, each image scored on the side')
    for d in report['protocol']['directions']:
        assert report['methods']['gradstyle']['edits'][d['name']]['attr_intended'] >= MIN_INTENDED, d['name']

#----------------------------------------------------------------------------
# The demo, recomputed.

def test_demo_runs_with_defaults_and_writes_its_files(demo_run, bundle):
    result, out, summary = demo_run
    assert result.exit_code == 0, result.output
    for rel in ['comparison.png', 'report.md', 'summary.json', 'eval/report.json', 'eval/samples/e4e.png', 'eval/samples/gradstyle.png']:
        assert (out / rel).is_file(), rel
    n = len(bundle.images())
    assert summary['num_images'] == n
    dirs = summary['edits']
    img = np.asarray(PIL.Image.open(out / 'comparison.png'))
    # Rows: one label strip + one row per image; columns: source, e4e, GradStyle, then -a and +a per direction.
    assert img.shape[1] == (3 + 2 * len(dirs)) * 32 * 3 and img.shape[0] == 12 + min(n, 16) * 32 * 3
    assert result.output.count('PASS') + result.output.count('FAIL') == len(summary['checks'])

def test_recomputed_figures_match_the_committed_ones(demo_run, bundle):
    _result, _out, summary = demo_run
    committed = _committed(bundle)
    assert summary['images'] == committed['images']
    assert summary['network_sha256'] == committed['network_sha256']
    for m in ['e4e', 'gradstyle']:
        for k in ['l2', 'one_minus_ssim', 'psnr']:
            assert summary['reconstruction'][m][k] == pytest.approx(committed['reconstruction'][m][k], rel=1e-3), (m, k)
    for name, cell in summary['edits'].items():
        for m in ['e4e', 'gradstyle']:
            assert cell[m]['id'] == pytest.approx(committed['edits'][name][m]['id'], abs=2e-3), (name, m)
            for k in ['intended', 'intended_both']:
                assert cell[m][k] == pytest.approx(committed['edits'][name][m][k], abs=0.05), (name, m, k)

def test_recomputed_figures_meet_the_acceptance(demo_run):
    _result, _out, summary = demo_run
    rec = summary['reconstruction']
    # Recomputed from the per-method figures, not read from the summary's own gain fields.
    assert 1 - rec['gradstyle']['l2'] / rec['e4e']['l2'] >= MIN_GAIN
    assert 1 - rec['gradstyle']['one_minus_ssim'] / rec['e4e']['one_minus_ssim'] >= MIN_GAIN
    assert len(summary['edits']) >= 3

@pytest.mark.xfail(strict=True, reason='on the 16 demo images GradStyle\'s edit ID is 0.004-0.007 below e4e-only\'s for '
    'trousers, dress and bag (0.020 above for boot), within the spread of 16 images; on the 500-image build eval it is above '
    'for all four (test_build_eval_meets_the_acceptance_on_the_test_split)')
def test_recomputed_edit_id_is_above_e4e(demo_run):
    for name, cell in demo_run[2]['edits'].items():
        assert cell['gradstyle']['id'] > cell['e4e']['id'], name

def test_recomputed_edits_move_the_attribute_as_intended(demo_run):
    for name, cell in demo_run[2]['edits'].items():
        assert cell['gradstyle']['intended'] >= MIN_INTENDED, name

def test_demo_report_states_both_methods(demo_run):
    text = (demo_run[1] / 'report.md').read_text()
    assert 'e4e-only' in text and 'GradStyle' in text and '![' in text

#----------------------------------------------------------------------------
# The user's own images; --network demo elsewhere.

def test_demo_takes_an_rgb_photo_of_another_size(tmp_path):
    photo = DATA / 'fixtures' / 'images' / 'e4e_car_img.jpg'
    result = CliRunner().invoke(demo_cli.main, ['--input', str(photo), '--outdir', str(tmp_path / 'out')])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / 'out' / 'eval' / 'report.json').read_text())
    assert report['protocol']['num_images'] == 1 and report['protocol']['channels'] == 1
    assert report['protocol']['converted'] and report['protocol']['converted'][0]['notes']

def test_gradstyle_edit_resolves_network_demo(tmp_path, monkeypatch, bundle):
    monkeypatch.chdir(tmp_path)                      # no file named 'demo' here
    image = bundle.images()[0]
    result = CliRunner().invoke(edit_cli.main, ['--network', 'demo', '--input', image, '--direction', 'trousers',
        '--alpha', '-2,2', '--outdir', str(tmp_path / 'edits')])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (tmp_path / 'edits').rglob('*.png'))
    assert any('trousers' in name for name in written) and 'reconstruction.png' in written

def test_gradstyle_eval_resolves_network_demo(tmp_path, monkeypatch, bundle):
    from gradstyle_plugin.cli import eval as eval_cli
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(eval_cli.main, ['--network', 'demo', '--data', bundle.images()[0], '--direction', 'boot',
        '--methods', 'e4e', '--alpha', '-3,3', '--outdir', str(tmp_path / 'eval')])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / 'eval' / 'report.json').read_text())
    assert report['protocol']['network']['file'] == bundle.path('network')
    assert [d['name'] for d in report['protocol']['directions']] == ['boot'] and report['protocol']['directions'][0]['matches_network']

@pytest.mark.parametrize('args, message', [
    (['--input', 'no_such_folder'], '--input: no such file or folder'),
    (['--max-images', '0'], '--max-images: must be at least 1'),
    (['--alpha', 'x'], '--alpha'),
])
def test_bad_options_give_one_line_errors(tmp_path, args, message):
    result = CliRunner().invoke(demo_cli.main, args + ['--outdir', str(tmp_path / 'out')])
    assert result.exit_code == 2
    assert message in result.output and 'Traceback' not in result.output
    assert not (tmp_path / 'out').exists()

def test_a_modified_bundle_is_refused(tmp_path):
    copy = tmp_path / 'bundle'
    shutil.copytree(db.BUNDLE_DIR, copy)
    target = copy / 'classifier.pt'
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF                     # one byte changed, same size
    target.write_bytes(bytes(data))
    result = CliRunner().invoke(demo_cli.main, ['--bundle', str(copy), '--outdir', str(tmp_path / 'out')])
    assert result.exit_code == 2 and 'classifier.pt does not match its sha256' in result.output

def test_dry_run_prints_the_config(tmp_path):
    result = CliRunner().invoke(demo_cli.main, ['--dry-run', '--outdir', str(tmp_path / 'out')])
    assert result.exit_code == 0
    c = json.loads(result.output)
    assert c['eval']['methods'] == ['e4e', 'gradstyle'] and c['bundled_images'] is True
    assert not (tmp_path / 'out').exists()

#----------------------------------------------------------------------------
