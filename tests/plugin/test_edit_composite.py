"""gradstyle_plugin.edit: composite edits (several directions in one pass) and the per-stage knobs
(`stages`, `gate_scale`) of the Editor.

References: the edited codes are built by hand (W+ + sum alpha_k dW_k on each direction's rows) and
rendered with streams.editing_stream; the `stages` knob is checked against a generator that has
only the kept stage attached (weights copied), an independent construction.
"""

import pytest
import torch

import editing_directions as ed
from stylegan2_ada_pytorch.dnnlib import UserError
from gradstyle_plugin import edit as gse
from gradstyle_plugin import streams
from gradstyle_plugin.attach import attach
from tests.plugin.test_edit import _images, network_files

#----------------------------------------------------------------------------

@pytest.fixture(scope='module')
def files(tmp_path_factory):
    return network_files(tmp_path_factory.mktemp('composite_nets'))

@pytest.fixture(scope='module')
def editor(files):
    return gse.load_editor(files[0].gradstyle, device='cpu')

def _unit(seed, shape=(1, 32)):
    v = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()

#----------------------------------------------------------------------------

def test_composite_edit_equals_the_summed_offset(editor, tmp_path):
    G, img = editor.G, _images(2)
    fp = ed.generator_fingerprint(G)
    smile = ed.Direction('smile', 'interfacegan', _unit(1), fingerprint=fp)                    # every row
    pose = ed.Direction('pose', 'interfacegan', _unit(2), layers=(0, 4), fingerprint=fp)        # rows 0..3
    out = editor.composite(img, [(smile, 2.0), (pose, -1.5)])
    inv = editor.invert(img)
    ws = inv.ws.clone()
    ws += 2.0 * smile.vector[:, None, :]
    ws[:, 0:4] += -1.5 * pose.vector[:, None, :]
    expected = streams.editing_stream(G, ws, inv.residuals)[0]
    assert torch.allclose(out.ws_edit, ws, rtol=0, atol=1e-6)
    # The codes agree to float32 rounding (the offsets are summed in another order); through the generator a
    # 1e-7 code difference becomes ~4e-5 in the image with 2 threads, far below the 1e-3 that tells edits apart.
    assert torch.allclose(out.img_edit, expected, rtol=0, atol=2e-4) and torch.equal(out.img_rec, inv.img_rec)
    # Not one of the two edits alone.
    for d, a in [(smile, 2.0), (pose, -1.5)]:
        assert (editor.edit(img, d, [a]).img_edit[a] - out.img_edit).abs().max() > 1e-3
    # By name from a registry, as a dict; W+ tensors too.
    ed.save_directions([smile, pose], tmp_path / 'reg', dataset='tiny')
    by_name = editor.composite(img, {'smile': 2, 'pose': -1.5}, registry_dirs=[tmp_path / 'reg'])
    assert torch.allclose(by_name.img_edit, out.img_edit, rtol=0, atol=1e-6)
    wplus = torch.zeros([1, 8, 32])
    wplus[:, 0:4] = pose.vector
    tensors = editor.composite(img, [(smile.vector, 2.0), (wplus, -1.5)])
    assert torch.allclose(tensors.ws_edit, ws, rtol=0, atol=1e-6)

def test_stages_knob_switches_the_named_stages(files, editor):
    paths, G0, G, E = files
    img = _images(2)
    only = gse.load_editor(paths.gradstyle, device='cpu', stages=['b16'])
    inv = only.invert(img)
    assert set(inv.residuals) == {'b16'} and only.knobs == dict(stages=['b16'])
    # Reference: G0 with the b16 stage alone attached, weights copied from G.
    torch.manual_seed(0)
    G16 = attach(G0, preset='tiny', stages=['b16'])
    G16.load_state_dict({k: v for k, v in G.state_dict().items() if k in G16.state_dict()})
    ref = gse.Editor(G16, E)
    assert set(G16.synthesis.injectors) == {'b16'}
    ref_inv = ref.invert(img)
    assert torch.allclose(inv.img_rec, ref_inv.img_rec, rtol=0, atol=1e-6)
    d = _unit(3)
    assert torch.allclose(only.edit_codes(inv, d, 1.5)[1], ref.edit_codes(ref_inv, d, 1.5)[1], rtol=0, atol=1e-6)
    assert (inv.img_rec - editor.invert(img).img_rec).abs().max() > 1e-3                       # the other stages mattered
    # gate_scale 0 on the other stages switches them off too; 0.5 on one is neither on nor off.
    off = gse.load_editor(paths.gradstyle, device='cpu', gate_scale={'b8': 0, 'b32': 0})
    assert torch.allclose(off.invert(img).img_rec, inv.img_rec, rtol=0, atol=1e-6)
    half = gse.load_editor(paths.gradstyle, device='cpu', gate_scale={'b32': 0.5}).invert(img).img_rec
    full, none = editor.invert(img).img_rec, gse.load_editor(paths.gradstyle, device='cpu', gate_scale={'b32': 0}).invert(img).img_rec
    assert (half - full).abs().max() > 1e-4 and (half - none).abs().max() > 1e-4

def test_knob_errors_name_the_flag(files):
    paths = files[0]
    with pytest.raises(UserError, match=r'^--stages: b64 not among the GradStyle stages \(b8, b16, b32\)$'):
        gse.load_editor(paths.gradstyle, device='cpu', stages=['b64'])
    with pytest.raises(UserError, match=r'^--gate-scale: b4 not among'):
        gse.load_editor(paths.gradstyle, device='cpu', gate_scale={'b4': 0.5})
    with pytest.raises(UserError, match=r'^--gate-scale: b32 switched off by --stages b8,b16; its scale would do nothing$'):
        gse.load_editor(paths.gradstyle, device='cpu', stages=['b8', 'b16'], gate_scale={'b32': 0.5, 'b16': 0.5})
    with pytest.raises(UserError, match=r'^--stages: the network has no GradStyle stages \(e4e mode\)'):
        gse.load_editor(paths.encoder, device='cpu', stages=['b16'])

#----------------------------------------------------------------------------
