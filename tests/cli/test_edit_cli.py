"""gradstyle-edit through click's CliRunner on a tiny GradStyle network: files, grid size, alpha
sweeps, progress output, one-line errors and exit codes (0 ok, 1 some inputs skipped, 2 usage).

The fixture networks come from tests/plugin/test_edit.py (network_files); the user registry is
redirected to a temporary folder ($GRADSTYLE_DIRECTIONS) in every test.
"""

import json
import os

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import editing_directions as ed
from stylegan2_ada_pytorch import testing
from stylegan2_ada_pytorch.dnnlib import UserError
from gradstyle_plugin import edit as gse
from gradstyle_plugin.cli import edit as cli
from tests.plugin.test_edit import network_files

R = 32                                              # Resolution of the fixture network.

#----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def nets(tmp_path_factory):
    return network_files(tmp_path_factory.mktemp('edit_cli_nets'))

@pytest.fixture(autouse=True)
def user_registry(tmp_path, monkeypatch):
    monkeypatch.setenv(ed.ENV_VAR, str(tmp_path / 'user_registry'))

@pytest.fixture
def photos(tmp_path):
    """Two readable images (one RGB 32x32, one grayscale 40x48) in a folder."""
    rng = np.random.RandomState(0)
    folder = tmp_path / 'photos'
    folder.mkdir()
    rgb = (rng.rand(R, R, 3) * 255).astype(np.uint8)
    PIL.Image.fromarray(rgb).save(folder / 'face.png')
    PIL.Image.fromarray((rng.rand(48, 40) * 255).astype(np.uint8), 'L').save(folder / 'gray.png')
    return folder

def _registry(tmp_path, G, names=('smile', 'age'), fingerprint_of=None, seed=0):
    """A registry folder with unit W directions bound to G (or to `fingerprint_of`)."""
    root = tmp_path / 'registry'
    gen = torch.Generator().manual_seed(seed)
    fp = ed.generator_fingerprint(fingerprint_of if fingerprint_of is not None else G)
    dirs = []
    for name in names:
        v = torch.randn([1, 32], generator=gen)
        dirs.append(ed.Direction(name, 'interfacegan', v / v.norm(), fingerprint=fp, generator='fixture'))
    ed.save_directions(dirs, root, dataset='tiny', overwrite=True)
    return root, {d.name: d for d in dirs}

def _invoke(args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)

def _assert_usage_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('Error: '), result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])

def _png(path):
    return np.asarray(PIL.Image.open(path).convert('RGB'))

def _u8(img):
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()

#----------------------------------------------------------------------------

@pytest.mark.integration
def test_writes_every_file_and_a_grid_of_the_right_size(nets, photos, tmp_path):
    paths, _G0, G, _E = nets
    registry, dirs = _registry(tmp_path, G)
    outdir = tmp_path / 'out'
    result = _invoke(['--network', paths.gradstyle, '--input', photos, '--direction', 'smile', '--direction', 'age',
        '--alpha=-3:3:7', '--outdir', outdir, '--registry', registry, '--device', 'cpu', '--batch', 2])
    assert result.exit_code == 0, result.output
    assert 'Editing 2 images' in result.output                                          # progress bar label
    assert 'gray.png: mode L: grayscale replicated to RGB; center-crop 40x48 -> 40x40; resize 40x40 -> 32x32 (Lanczos)' in result.output
    assert '2 of 2 images edited (2 directions, gradstyle mode)' in result.output
    alphas = ['-3', '-2', '-1', '0', '1', '2', '3']
    for stem in ['face', 'gray']:
        names = sorted(os.listdir(outdir / stem))
        assert names == sorted(['reconstruction.png', 'grid.png', 'ws.npy'] + [f'{d}_{a}.png' for d in ['smile', 'age'] for a in alphas])
        grid = _png(outdir / stem / 'grid.png')
        assert grid.shape == (2 * R, (2 + 7) * R, 3)                                       # rows = directions, cols = 2 + alphas
        assert np.array_equal(grid[:R, R:2 * R], _png(outdir / stem / 'reconstruction.png'))
        assert np.array_equal(grid[R:, 8 * R:], _png(outdir / stem / 'age_3.png'))
        assert not np.array_equal(_png(outdir / stem / 'smile_0.png'), _png(outdir / stem / 'reconstruction.png'))  # continuous sweep
        ws = np.load(outdir / stem / 'ws.npy', allow_pickle=False)
        assert ws.shape == (8, 32) and ws.dtype == np.float32
    # The face cells against the Python API run on the same pixels.
    editor = gse.load_editor(paths.gradstyle, device='cpu')
    src = np.asarray(PIL.Image.open(photos / 'face.png'))
    out = editor.edit(gse.to_tensor([src]), dirs['age'], [3.0])
    assert np.array_equal(_png(outdir / 'face' / 'grid.png')[:R, :R], src)                  # source column
    assert np.array_equal(_png(outdir / 'face' / 'age_3.png'), _u8(out.img_edit[3.0])[0])
    assert np.allclose(np.load(outdir / 'face' / 'ws.npy'), out.ws[0].numpy(), rtol=0, atol=1e-6)
    summary = json.loads((outdir / 'edits.json').read_text())
    assert (summary['num_ok'], summary['num_failed'], summary['mode']) == (2, 0, 'gradstyle')
    assert [d['alphas'] for d in summary['directions']] == [[-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]] * 2
    # The aligner's identity error on unwarped residuals at alpha 0, per input and averaged.
    face = next(r for r in summary['inputs'] if r['stem'] == 'face')
    expected = editor.identity_error(editor.invert(gse.to_tensor([src])))
    assert set(face['aligner_identity_error']) == set(expected) == set(summary['aligner_identity_error']['mean'])
    for stage, value in face['aligner_identity_error'].items():
        assert abs(value - float(expected[stage][0])) < 1e-5
    assert "Aligner identity error at alpha 0" in result.output and summary['alpha0_shortcut'] is False
    assert not [n for n in os.listdir(outdir / 'face') if n.startswith('.')]                # no temporary files left

def test_alpha0_shortcut_writes_the_reconstruction(nets, photos, tmp_path):
    paths, _G0, G, _E = nets
    registry, _dirs = _registry(tmp_path, G)
    outdir = tmp_path / 'out'
    result = _invoke(['--network', paths.gradstyle, '--input', photos / 'face.png', '--direction', 'smile', '--alpha', '0,1',
        '--outdir', outdir, '--registry', registry, '--device', 'cpu', '--alpha0-shortcut'])
    assert result.exit_code == 0, result.output
    assert np.array_equal(_png(outdir / 'face' / 'smile_0.png'), _png(outdir / 'face' / 'reconstruction.png'))
    assert json.loads((outdir / 'edits.json').read_text())['alpha0_shortcut'] is True

def test_alpha_forms_and_default_alpha(nets, photos, tmp_path):
    paths, _G0, G, _E = nets
    registry, _dirs = _registry(tmp_path, G, names=('smile',))
    assert cli.parse_alphas('-3:3:7') == [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    assert cli.parse_alphas('0:1:11')[3] == 0.3 and len(cli.parse_alphas('0:1:11')) == 11
    assert cli.parse_alphas('-1,0,2.5') == [-1.0, 0.0, 2.5] and cli.parse_alphas('2') == [2.0]
    for bad in ['a', '1:2', '1:2:0', '1,1', 'nan']:
        with pytest.raises(UserError, match='--alpha'):
            cli.parse_alphas(bad)
    result = _invoke(['--network', paths.gradstyle, '--input', photos / 'face.png', '--direction', 'smile', '--alpha', '1.5,-0.5',
        '--outdir', tmp_path / 'out', '--registry', registry, '--device', 'cpu'])
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / 'out' / 'face')) == ['grid.png', 'reconstruction.png', 'smile_-0.5.png', 'smile_1.5.png', 'ws.npy']
    result = _invoke(['--network', paths.gradstyle, '--input', photos / 'face.png', '--direction', 'smile', '--outdir', tmp_path / 'def',
        '--registry', registry, '--device', 'cpu'])
    assert result.exit_code == 0 and 'smile_3.png' in os.listdir(tmp_path / 'def' / 'face')   # the direction's default_alpha 3
    assert _png(tmp_path / 'def' / 'face' / 'grid.png').shape == (R, 3 * R, 3)

def test_missing_direction_is_a_usage_error(nets, photos, tmp_path):
    paths = nets[0]
    result = _invoke(['--network', paths.gradstyle, '--input', photos, '--direction', 'nosuch', '--outdir', tmp_path / 'out', '--device', 'cpu'])
    _assert_usage_error(result, '--direction nosuch:', "no direction named 'nosuch'")

def test_fingerprint_mismatch_needs_force(nets, photos, tmp_path):
    paths, _G0, G, _E = nets
    registry, _dirs = _registry(tmp_path, G, names=('smile',), fingerprint_of=testing.tiny_generator(seed=1))
    args = ['--network', paths.gradstyle, '--input', photos, '--direction', 'smile', '--alpha', 1, '--outdir', tmp_path / 'out',
        '--registry', registry, '--device', 'cpu']
    _assert_usage_error(_invoke(args), '--direction smile:', 'was made for', '--force')
    assert not (tmp_path / 'out').exists()
    result = _invoke(args + ['--force'])
    assert result.exit_code == 0, result.output
    assert 'warning: direction tiny_w/smile was made for another generator' in result.output
    assert json.loads((tmp_path / 'out' / 'edits.json').read_text())['directions'][0]['matches_network'] is False

def test_unreadable_image_is_skipped_with_exit_1(nets, photos, tmp_path):
    paths = nets[0]
    (photos / 'zz_broken.jpg').write_bytes(b'\xff\xd8\xff not really a jpeg')
    torch.save(torch.randn([1, 32], generator=torch.Generator().manual_seed(2)), tmp_path / 'Pose.pt')
    result = _invoke(['--network', paths.gradstyle, '--input', photos, '--direction-file', tmp_path / 'Pose.pt', '--alpha', 2,
        '--outdir', tmp_path / 'out', '--device', 'cpu'])
    assert result.exit_code == 1, result.output
    assert 'zz_broken.jpg: skipped: cannot read image file' in result.output
    assert '1 skipped: zz_broken.jpg' in result.output
    for stem in ['face', 'gray']:
        assert (tmp_path / 'out' / stem / 'pose_2.png').is_file()                            # the others are still written
    assert not (tmp_path / 'out' / 'zz_broken').exists()
    summary = json.loads((tmp_path / 'out' / 'edits.json').read_text())
    assert (summary['num_ok'], summary['num_failed']) == (2, 1)
    assert [r['status'] for r in summary['inputs']] == ['ok', 'ok', 'failed']   # the last one failed: earlier ones flushed

def test_failed_write_leaves_no_partial_file(nets, photos, tmp_path, monkeypatch):
    paths = nets[0]
    torch.save(torch.randn([1, 32], generator=torch.Generator().manual_seed(2)), tmp_path / 'pose.pt')
    real_save, calls = np.save, []
    def failing_save(f, arr, **kwargs):                 # The first ws.npy (face, sorted first) fails half-way.
        calls.append(1)
        if len(calls) == 1:
            f.write(b'half')
            raise OSError(28, 'No space left on device')
        return real_save(f, arr, **kwargs)
    monkeypatch.setattr(cli.np, 'save', failing_save)
    result = _invoke(['--network', paths.gradstyle, '--input', photos, '--direction-file', tmp_path / 'pose.pt', '--alpha', 1,
        '--outdir', tmp_path / 'out', '--device', 'cpu'])
    assert result.exit_code == 1, result.output
    assert 'face.png: failed: cannot write outputs' in result.output
    assert sorted(os.listdir(tmp_path / 'out' / 'face')) == ['grid.png', 'pose_1.png', 'reconstruction.png']   # no ws.npy, no temp file
    assert (tmp_path / 'out' / 'gray' / 'ws.npy').is_file()

def test_wrong_shape_direction_file(nets, photos, tmp_path, fixtures_dir):
    paths = nets[0]
    age = fixtures_dir / 'directions' / 'age.pt'                           # e4e's FFHQ direction, [1, 512]
    if age.is_file():
        result = _invoke(['--network', paths.gradstyle, '--input', photos, '--direction-file', age, '--outdir', tmp_path / 'out', '--device', 'cpu'])
        _assert_usage_error(result, f'--direction-file {age}:', 'has width 512, the generator has w_dim 32')
    np.save(tmp_path / 'wide.npy', np.ones([1, 64], dtype=np.float32))
    result = _invoke(['--network', paths.gradstyle, '--input', photos, '--direction-file', tmp_path / 'wide.npy', '--outdir', tmp_path / 'out', '--device', 'cpu'])
    _assert_usage_error(result, f'--direction-file {tmp_path / "wide.npy"}:', 'has width 64, the generator has w_dim 32')
    np.save(tmp_path / 'rows.npy', np.ones([1, 5, 32], dtype=np.float32))
    result = _invoke(['--network', paths.gradstyle, '--input', photos, '--direction-file', tmp_path / 'rows.npy', '--outdir', tmp_path / 'out', '--device', 'cpu'])
    _assert_usage_error(result, 'has 5 rows, the generator has 8')

def test_other_usage_errors_exit_2(nets, photos, tmp_path):
    paths = nets[0]
    base = ['--input', photos, '--outdir', tmp_path / 'out', '--device', 'cpu']
    _assert_usage_error(_invoke(['--network', tmp_path / 'none.pkl', '--direction', 'x'] + base), '--network: no such file')
    _assert_usage_error(_invoke(['--network', paths.gradstyle] + base), '--direction: give at least one')
    _assert_usage_error(_invoke(['--network', paths.gradstyle, '--direction', 'x', '--alpha', 'big'] + base), '--alpha:')
    _assert_usage_error(_invoke(['--network', paths.plain, '--direction', 'x'] + base), '--encoder:', 'plain generator')
    _assert_usage_error(_invoke(['--network', paths.gradstyle, '--direction', 'x', '--input', tmp_path / 'nope', '--outdir', tmp_path]),
        '--input: no such file or folder')
    _assert_usage_error(_invoke(['--network', paths.gradstyle, '--direction', 'x', '--direction', 'ffhq_w/x'] + base), "'x' is given twice")
    assert _invoke(['--input', photos, '--outdir', tmp_path]).exit_code == 2                                  # click: missing --network

def test_dry_run_prints_the_resolved_config(nets, photos, tmp_path):
    paths = nets[0]
    result = _invoke(['--network', paths.gradstyle, '--input', photos, '--direction', 'smile', '--alpha=-1:1:3', '--outdir', tmp_path / 'out',
        '--dry-run', '--device', 'cpu', '--seed', 7])
    assert result.exit_code == 0, result.output
    c = json.loads(result.output)
    assert c['alphas'] == [-1.0, 0.0, 1.0] and c['inputs'] == ['face.png', 'gray.png'] and c['seed'] == 7
    assert c['directions'] == ['smile'] and c['outdir'] == str(tmp_path / 'out') and c['force'] is False
    assert not (tmp_path / 'out').exists()

def test_e4e_only_path(nets, photos, tmp_path):
    paths, G0, _G, E = nets
    registry, dirs = _registry(tmp_path, G0, names=('smile',))
    result = _invoke(['--network', paths.plain, '--encoder', paths.encoder, '--input', photos / 'face.png', '--direction', 'smile',
        '--alpha', '2', '--outdir', tmp_path / 'out', '--registry', registry, '--device', 'cpu', '--force'])   # untrained encoder
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / 'out' / 'edits.json').read_text())['mode'] == 'e4e'
    src = np.asarray(PIL.Image.open(photos / 'face.png'))
    with torch.no_grad():                                                   # independent: originals, no Editor
        ws = E(gse.to_tensor([src]))[0]
        edited = G0.synthesis(ws + 2.0 * dirs['smile'].vector[:, None, :], noise_mode='const')
        rec = G0.synthesis(ws, noise_mode='const')
    assert np.array_equal(_png(tmp_path / 'out' / 'face' / 'smile_2.png'), _u8(edited)[0])
    assert np.array_equal(_png(tmp_path / 'out' / 'face' / 'reconstruction.png'), _u8(rec)[0])

@pytest.mark.integration
def test_real_photo_from_a_zip(nets, fixtures_dir, tmp_path):
    import zipfile
    path = fixtures_dir / 'images' / 'e4e_input_img.jpg'
    with zipfile.ZipFile(tmp_path / 'in.zip', 'w') as zf:
        zf.write(path, 'photos/e4e_input_img.jpg')
    torch.save(torch.randn([1, 8, 32], generator=torch.Generator().manual_seed(4)), tmp_path / 'pose.pt')    # W+ direction
    result = _invoke(['--network', nets[0].gradstyle, '--input', tmp_path / 'in.zip', '--direction-file', tmp_path / 'pose.pt',
        '--alpha', '-2,2', '--outdir', tmp_path / 'out', '--device', 'cpu'])
    assert result.exit_code == 0, result.output
    assert 'in.zip:photos/e4e_input_img.jpg: resize 1024x1024 -> 32x32 (Lanczos)' in result.output
    grid = _png(tmp_path / 'out' / 'e4e_input_img' / 'grid.png')
    assert grid.shape == (R, 4 * R, 3)
    reference = np.asarray(PIL.Image.open(path).convert('RGB').resize((R, R), PIL.Image.LANCZOS))
    assert np.array_equal(grid[:, :R], reference)

def test_help():
    result = _invoke(['--help'])
    assert result.exit_code == 0 and '--direction-file' in result.output and 'START:STOP:COUNT' in result.output

#----------------------------------------------------------------------------
