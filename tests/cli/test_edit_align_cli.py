"""gradstyle-edit's issue-13 flags (--edit composites, --stages/--gate-scale, --align, --paste-back,
--mask) and gradstyle-align, through click's CliRunner on the tiny fixture network (32 px).

References: composite cells against W+ codes summed by hand and rendered with
streams.editing_stream under the same knobs; pasted files against align.paste_back on the
transform read back from edits.json; untouched pixels against the photo itself.
"""

import json
import sys

import numpy as np
import PIL.Image
import pytest
import skimage.data
import torch
from click.testing import CliRunner

import editing_directions as ed
from gradstyle_plugin import align, streams
from gradstyle_plugin import edit as gse
from gradstyle_plugin.cli import align as align_cli
from gradstyle_plugin.cli import edit as cli
from tests.cli.test_edit_cli import _assert_usage_error, _png, _registry, _u8
from tests.plugin.test_edit import network_files

R = 32

#----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def nets(tmp_path_factory):
    return network_files(tmp_path_factory.mktemp('edit_align_nets'))

@pytest.fixture(autouse=True)
def user_registry(tmp_path, monkeypatch):
    monkeypatch.setenv(ed.ENV_VAR, str(tmp_path / 'user_registry'))

@pytest.fixture
def photos(tmp_path, fixtures_dir):
    """astronaut.png (a face, 512x512) and e4e_car_img.jpg (no face) in a folder."""
    folder = tmp_path / 'photos'
    folder.mkdir()
    PIL.Image.fromarray(skimage.data.astronaut()).save(folder / 'astronaut.png')
    (folder / 'e4e_car_img.jpg').write_bytes((fixtures_dir / 'images' / 'e4e_car_img.jpg').read_bytes())
    return folder

def _invoke(args, command=cli.main):
    return CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)

#----------------------------------------------------------------------------

def test_composite_edits_and_knobs(nets, tmp_path):
    paths, _G0, G, _E = nets
    registry, dirs = _registry(tmp_path, G)
    src = (np.random.RandomState(0).rand(R, R, 3) * 255).astype(np.uint8)
    PIL.Image.fromarray(src).save(tmp_path / 'face.png')
    out = tmp_path / 'out'
    result = _invoke(['--network', paths.gradstyle, '--input', tmp_path / 'face.png', '--edit', 'smile:2,age:-1.5', '--edit', 'smile:-1:1:3,age:1',
        '--stages', 'b8,b16', '--gate-scale', 'b16=0.5', '--outdir', out, '--registry', registry, '--device', 'cpu'])
    assert result.exit_code == 0, result.output
    assert '1 of 1 image edited (0 directions, 2 composite edits, gradstyle mode)' in result.output
    # The cell against W+ + 2 smile - 1.5 age, rendered by the streams with the same knobs.
    editor = gse.load_editor(paths.gradstyle, device='cpu')
    inv = editor.invert(gse.to_tensor([src]))
    knobs = dict(stages={'b8', 'b16'}, gate_scale={'b16': 0.5})
    ws, features = editor.encoder(gse.to_tensor([src]))
    _rec, record = streams.reconstruction_stream(G, ws, features, **knobs)
    ws_edit = ws + 2 * dirs['smile'].vector[:, None] - 1.5 * dirs['age'].vector[:, None]
    expected = streams.editing_stream(G, ws_edit, {s: r['F'] for s, r in record.items()}, **knobs)[0]
    assert np.abs(_png(out / 'face' / 'smile_2+age_-1.5.png').astype(int) - _u8(expected)[0]).max() <= 1
    assert not np.array_equal(_png(out / 'face' / 'reconstruction.png'), _u8(inv.img_rec)[0])        # the knobs changed it
    for a in ['-1', '0', '1']:
        assert (out / 'face' / f'smile_{a}+age_1.png').is_file()
    grid = _png(out / 'face' / 'grid.png')
    assert grid.shape == (2 * R, 5 * R, 3) and not grid[:R, 3 * R:].any()                           # short row padded black
    summary = json.loads((out / 'edits.json').read_text())
    assert summary['knobs'] == dict(stages=['b8', 'b16'], gate_scale={'b16': 0.5})
    assert [[e['name'] for e in x['edits']] for x in summary['composite_edits']] == [['smile', 'age'], ['smile', 'age']]
    assert summary['composite_edits'][1]['edits'][0]['alphas'] == [-1.0, 0.0, 1.0]
    assert [x['label'] for x in summary['composite_edits']] == ['smile_2+age_-1.5', 'smile_-1..1+age_1']
    assert summary['inputs'][0]['outputs']['edits']['smile@2+age@-1.5'] == 'face/smile_2+age_-1.5.png'

@pytest.mark.integration
def test_align_and_paste_back(nets, photos, tmp_path):
    paths, _G0, G, _E = nets
    registry, _dirs = _registry(tmp_path, G)
    out = tmp_path / 'out'
    result = _invoke(['--network', paths.gradstyle, '--input', photos, '--align', '--paste-back', '--direction', 'smile', '--alpha', 2,
        '--edit', 'smile:1,age:1', '--outdir', out, '--registry', registry, '--device', 'cpu'])
    assert result.exit_code == 1, result.output                                                     # the car has no face
    assert 'e4e_car_img.jpg: skipped: no face found' in result.output
    folder = out / 'astronaut'
    photo = skimage.data.astronaut()
    summary = json.loads((out / 'edits.json').read_text())
    record = next(r for r in summary['inputs'] if r['stem'] == 'astronaut')
    transform = align.AlignTransform.from_dict(record['align']['transform'])
    assert transform.resolution == R and summary['align']['paste_back'] is True
    assert np.array_equal(_png(folder / 'grid.png')[:R, :R], align.align_photo(photo, R).crop)     # the source column is the crop
    for name in ['reconstruction', 'smile_2', 'smile_1+age_1']:
        pasted = _png(folder / f'{name}_pasted.png')
        assert pasted.shape == photo.shape
        assert np.array_equal(pasted, align.paste_back(photo, _png(folder / f'{name}.png'), transform))
        assert record['outputs']['pasted'][name.replace('_', '@') if name != 'reconstruction' else name] == f'astronaut/{name}_pasted.png'
    inside = align.photo_mask(transform)[..., 0] > 0
    pasted = _png(folder / 'reconstruction_pasted.png')
    assert np.array_equal(pasted[~inside], photo[~inside]) and not np.array_equal(pasted[inside], photo[inside])

def test_mask_file_limits_the_paste(nets, tmp_path):
    paths, _G0, G, _E = nets
    registry, _dirs = _registry(tmp_path, G, names=('smile',))
    PIL.Image.fromarray(skimage.data.astronaut()).save(tmp_path / 'astronaut.png')
    left = np.zeros((64, 64), np.uint8)
    left[:, :32] = 255
    PIL.Image.fromarray(left).save(tmp_path / 'left.png')
    result = _invoke(['--network', paths.gradstyle, '--input', tmp_path / 'astronaut.png', '--align', '--paste-back', '--mask', tmp_path / 'left.png',
        '--direction', 'smile', '--alpha', 1, '--outdir', tmp_path / 'out', '--registry', registry, '--device', 'cpu'])
    assert result.exit_code == 0, result.output
    photo = skimage.data.astronaut()
    transform = align.AlignTransform.from_dict(json.loads((tmp_path / 'out' / 'edits.json').read_text())['inputs'][0]['align']['transform'])
    # The mask file is blurred by sigma = 0.1 R / 4 = 0.8 px (cut at 4 sigma), then warped bilinearly: 6 px of margin.
    right_half = align.warp_to_photo(np.where(np.arange(R) >= R // 2 + 6, 1.0, 0.0)[None, :].repeat(R, 0), transform)[..., 0] > 0.99
    pasted = _png(tmp_path / 'out' / 'astronaut' / 'smile_1_pasted.png')
    assert right_half.sum() > 100 and np.array_equal(pasted[right_half], photo[right_half])

def test_usage_errors(nets, tmp_path, monkeypatch):
    paths = nets[0]
    PIL.Image.fromarray(skimage.data.astronaut()).save(tmp_path / 'a.png')
    base = ['--network', paths.gradstyle, '--input', tmp_path / 'a.png', '--outdir', tmp_path / 'out', '--device', 'cpu']
    _assert_usage_error(_invoke(base + ['--direction', 'x', '--paste-back']), '--paste-back: needs --align')
    _assert_usage_error(_invoke(base + ['--direction', 'x', '--mask', tmp_path / 'a.png']), '--mask: only used with --paste-back')
    _assert_usage_error(_invoke(base + ['--edit', 'smile']), '--edit: expected NAME:ALPHA items')
    _assert_usage_error(_invoke(base + ['--edit', 'smile:1,smile:2']), 'a direction is given twice')
    _assert_usage_error(_invoke(base + ['--edit', 'smile:0:1:3,age:0:1:3']), 'only one direction can sweep')
    _assert_usage_error(_invoke(base + ['--edit', 'smile:big']), '--edit smile:big: smile: expected a number')
    _assert_usage_error(_invoke(base + ['--direction', 'x', '--gate-scale', 'b16']), '--gate-scale: expected STAGE=SCALE')
    _assert_usage_error(_invoke(base + ['--edit', 'nosuch:1']), '--edit nosuch:', "no direction named 'nosuch'")
    torch.save(torch.zeros([1, 32]), tmp_path / 'pose.pt')
    _assert_usage_error(_invoke(base + ['--direction-file', tmp_path / 'pose.pt', '--stages', 'b64']),
        '--stages: b64 not among the GradStyle stages (b8, b16, b32)')
    monkeypatch.setitem(sys.modules, 'mediapipe', None)                                              # the [align] extra missing
    result = _invoke(base + ['--direction', 'x', '--align'])
    _assert_usage_error(result, '--align: face alignment needs MediaPipe, an optional extra: pip install -e ".[align]"')
    _assert_usage_error(_invoke(['--input', tmp_path / 'a.png', '--outdir', tmp_path / 'al'], align_cli.main), 'pip install -e ".[align]"')

def test_gradstyle_align(photos, tmp_path):
    result = _invoke(['--input', photos, '--outdir', tmp_path / 'aligned', '--resolution', 128], align_cli.main)
    assert result.exit_code == 1, result.output
    assert 'e4e_car_img.jpg: skipped: no face found' in result.output and '1 of 2 photos aligned' in result.output
    crop = _png(tmp_path / 'aligned' / 'astronaut.png')
    expected = align.align_photo(skimage.data.astronaut(), 128)
    assert np.array_equal(crop, expected.crop)
    summary = json.loads((tmp_path / 'aligned' / 'align.json').read_text())
    record = next(r for r in summary['inputs'] if r['status'] == 'ok')
    assert np.allclose(record['transform']['quad'], expected.transform.quad) and record['num_faces'] == 1
    result = _invoke(['--input', photos, '--outdir', tmp_path / 'x', '--resolution', 128, '--dry-run'], align_cli.main)
    assert result.exit_code == 0 and json.loads(result.output)['resolution'] == 128 and not (tmp_path / 'x').exists()

#----------------------------------------------------------------------------
