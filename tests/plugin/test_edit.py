"""gradstyle_plugin.edit: the alpha = 0 rule (continuous by default, shortcut as an option), identity error, stream counts, batching, the e4e-only path, loader errors, image I/O.

Fixture networks are built here, as gradstyle-train writes them: tiny_generator -> attach('tiny')
with perturbed stage weights (so GradStyle changes the images) + a small encoder (32 px, w_dim 32,
feature_channels 32), saved with save_network_pkl. `network_files()` is also used by
tests/cli/test_edit_cli.py.
"""

import copy
import io
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

import editing_directions as ed
from stylegan2_ada_pytorch import dnnlib, legacy, testing
from stylegan2_ada_pytorch.dataset_tool import SkipImage
from gradstyle_plugin import edit as gse
from gradstyle_plugin import streams
from gradstyle_plugin.attach import attach, stage_modules
from gradstyle_plugin.encoder import small_encoder_kwargs
from gradstyle_plugin.gam import SelectiveAttention
from gradstyle_plugin.network import GradStyleNet

#----------------------------------------------------------------------------
# Fixtures.

def _perturb(module, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)

def tiny_encoder(res=32, seed=3, **kwargs):
    kwargs = dict(dict(w_dim=32, feature_channels=32), **kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        E = dnnlib.util.construct_class_by_name(**small_encoder_kwargs(res, **kwargs)).eval().requires_grad_(False)
        E.latent_avg.copy_(torch.randn(E.latent_avg.shape) * 0.3)
    return E

def tiny_gradstyle(seed=0):
    """(G0 plain, G with perturbed GradStyle stages, E)."""
    G0 = testing.tiny_generator(seed=seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = attach(G0, preset='tiny')
    for idx, stage in enumerate(stage_modules(G).values()):
        _perturb(stage, 0.05, seed=10 + idx)
    return G0, G, tiny_encoder()

def network_files(root):
    """Write the fixture pickles into `root`; returns (paths, G0, G, E)."""
    G0, G, E = tiny_gradstyle()
    D = testing.tiny_discriminator()
    paths = dnnlib.EasyDict({k: str(root / f'{k}.pkl') for k in ['gradstyle', 'plain', 'encoder', 'net', 'stages_only']})
    legacy.save_network_pkl(dict(G=G, D=D, G_ema=G, encoder=E, gradstyle_config=dict(preset='tiny'), training_state=None,
        training_set_kwargs=None, augment_pipe=None), paths.gradstyle)
    legacy.save_network_pkl(dict(G=G0, D=None, G_ema=G0), paths.plain)
    legacy.save_network_pkl(dict(G=G0, D=None, G_ema=G0, encoder=E), paths.encoder)
    legacy.save_network_pkl(dict(G=G0, D=D, G_ema=G0, gradstyle=GradStyleNet.from_modules(G, E)), paths.net)
    legacy.save_network_pkl(dict(G=G, D=D, G_ema=G), paths.stages_only)
    return paths, G0, G, E

@pytest.fixture(scope='module')
def files(tmp_path_factory):
    return network_files(tmp_path_factory.mktemp('edit_nets'))

@pytest.fixture(scope='module')
def editor(files):
    return gse.load_editor(files[0].gradstyle, device='cpu')

def _images(n=3, seed=1):
    return (torch.rand([n, 3, 32, 32], generator=torch.Generator().manual_seed(seed)) * 2 - 1)

def _direction(G, seed=5, name='smile'):
    v = torch.randn([1, 32], generator=torch.Generator().manual_seed(seed))
    return ed.Direction(name, 'interfacegan', v / v.norm(), fingerprint=ed.generator_fingerprint(G), generator='fixture')

#----------------------------------------------------------------------------
# Editing.

def test_alpha_zero_runs_the_editing_stream_by_default(editor):
    # Default: a sweep is continuous; alpha 0 is the editing stream on unchanged codes (the
    # aligner applied to unwarped residuals), not the reconstruction tensor.
    img = _images()
    d = _direction(editor.G)
    out = editor.edit(img, d, [-1e-3, 0, 1e-3, 1.5])
    assert editor.mode == 'gradstyle' and not editor.alpha0_shortcut
    inv = editor.invert(img)
    with torch.no_grad():
        aligned_at_zero = streams.editing_stream(editor.G, inv.ws, inv.residuals)[0]
    assert torch.equal(out.img_edit[0.0], aligned_at_zero) and out.img_edit[0.0] is not out.img_rec
    jump = float((out.img_edit[0.0] - out.img_rec).abs().max())
    step = max(float((out.img_edit[a] - out.img_edit[0.0]).abs().max()) for a in (-1e-3, 1e-3))
    print(f'alpha 0 vs reconstruction: max abs diff {jump:.4f}; alpha +-1e-3 vs alpha 0: {step:.2e}')
    assert jump > 1e-3 and step < 0.1 * jump        # continuous at 0; the reconstruction would be a jump
    img_rec, ws = editor.reconstruct(img)
    assert torch.equal(img_rec, out.img_rec) and torch.equal(ws, out.ws)

def test_alpha_zero_shortcut_option_returns_the_reconstruction(files):
    shortcut = gse.load_editor(files[0].gradstyle, device='cpu', alpha0_shortcut=True)
    out = shortcut.edit(_images(), _direction(shortcut.G), [0, 1.5])
    assert out.img_edit[0.0] is out.img_rec and out.ws_edit[0.0] is out.ws        # the same tensors
    assert not torch.equal(out.img_edit[1.5], out.img_rec)

def test_identity_error_is_the_aligner_distance_on_unwarped_residuals(editor):
    img = _images()
    inv = editor.invert(img)
    err = editor.identity_error(inv)
    with torch.no_grad():
        _x, rec = streams.editing_stream(editor.G, inv.ws, inv.residuals)
    assert list(err) == list(inv.residuals)
    for s, F in inv.residuals.items():
        Fp, Fn = rec[s]['F'].double().numpy(), F.double().numpy()
        ref = np.abs(Fp - Fn).reshape(len(Fn), -1).sum(1) / np.abs(Fn).reshape(len(Fn), -1).sum(1)
        np.testing.assert_allclose(err[s].double().numpy(), ref, rtol=1e-5)
    print('identity error of the fixture aligner (untrained, perturbed):', {s: [round(float(v), 3) for v in e] for s, e in err.items()})

def test_ganspace_alpha_zero_is_a_real_edit(editor):
    # A ganspace alpha SETS the coordinate along the component, so alpha 0 moves the codes.
    img = _images(2)
    comp = torch.zeros([1, 32])
    comp[0, 0] = 1
    d = ed.Direction('pc0', 'ganspace', comp, mean=torch.zeros([1, 32]), std=2.0, fingerprint=ed.generator_fingerprint(editor.G))
    out = editor.edit(img, d, [0.0])
    inv = editor.invert(img)
    expected_ws = inv.ws.clone()
    expected_ws[:, :, 0] -= inv.ws[:, :1, 0]                                # coordinate read from row 0, set to 0
    with torch.no_grad():
        expected = streams.editing_stream(editor.G, expected_ws, inv.residuals)[0]
    assert torch.allclose(out.ws_edit[0.0], expected_ws, rtol=0, atol=1e-6)
    assert out.img_edit[0.0] is not out.img_rec
    assert torch.allclose(out.img_edit[0.0], expected, rtol=0, atol=1e-5)

def test_reconstruction_runs_once_and_editing_once_per_alpha(editor):
    calls = []
    def hook(_module, _args, kwargs):
        calls.append((kwargs.get('inject_kwargs') or {}).get('stream'))
    handle = editor.G.synthesis.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        editor.edit(_images(4), _direction(editor.G), [-2, 0, 1, 3])
    finally:
        handle.remove()
    assert calls == ['rec', 'edit', 'edit', 'edit', 'edit']

def test_gradstyle_edit_matches_the_dual_stream_forward(files, editor):
    _paths, _G0, G, E = files
    img = _images()
    d = _direction(editor.G)
    out = editor.edit(img, d, [2.5])
    with torch.no_grad():
        ws = E(img)[0]
        ref = streams.run_streams(G, E, img, edit_ws=ws + 2.5 * d.vector)             # W direction, all rows
    assert torch.equal(out.ws, ref.ws) and torch.equal(out.img_rec, ref.img_rec)
    assert torch.equal(out.ws_edit[2.5], ref.ws_edit)
    assert torch.equal(out.img_edit[2.5], ref.img_edit)

def _close_to_float32_rounding(a, b, what):
    # |a - b| <= 1e-6 * max|b|: a few float32 ulps at the largest value of the tensor.
    diff, peak = float((a - b).abs().max()), float(b.abs().max())
    print(f'{what}: max abs diff {diff:.3g} (max |value| {peak:.3g}, relative {diff / peak:.2g})')
    return diff <= 1e-6 * max(peak, 1.0)

def _with_mu(editor, mu):
    G = copy.deepcopy(editor.G)
    for module in G.modules():
        if isinstance(module, SelectiveAttention):
            module.mu = mu
    return gse.Editor(G, editor.encoder)

def _batch_and_single(editor, alphas, n=4, seed=3):
    img = _images(n, seed=seed)
    d = _direction(editor.G)
    return editor.edit(img, d, alphas), [editor.edit(img[i:i + 1], d, alphas) for i in range(n)]

def test_batch_equals_one_by_one_up_to_float32_rounding(editor):
    # Not bitwise: the toolkit's synthesis runs a batch through one grouped modulated convolution
    # (groups = N), so oneDNN's float32 summation order depends on N; the plain toolkit synthesis
    # shows the same few-ulp differences (last print). Dense attention (mu = 1) keeps every
    # GradStyle output within 1e-6 of the largest value.
    dense = _with_mu(editor, 1.0)
    full, single = _batch_and_single(dense, [-1.0, 2.0])
    assert _close_to_float32_rounding(full.ws, torch.cat([s.ws for s in single]), 'ws')
    assert _close_to_float32_rounding(full.img_rec, torch.cat([s.img_rec for s in single]), 'img_rec')
    for alpha in [-1.0, 2.0]:
        assert _close_to_float32_rounding(full.img_edit[alpha], torch.cat([s.img_edit[alpha] for s in single]), f'img_edit[{alpha}] (mu 1)')
    with torch.no_grad():
        plain = editor.G.synthesis(full.ws, noise_mode='const')
        plain_single = torch.cat([editor.G.synthesis(full.ws[i:i + 1], noise_mode='const') for i in range(4)])
    _close_to_float32_rounding(plain, plain_single, 'toolkit G.synthesis alone')

def test_batch_with_top_mu_selection_differs_only_where_rounding_crosses_the_threshold(editor):
    # With the paper's mu = 0.5, Selective Attention keeps the top half of the scores per query: a
    # score within rounding of the threshold can be kept in one batch size and dropped in the
    # other, a jump that later layers spread. The reconstruction stream has no attention and stays
    # within rounding; edits differ at a few positions (measured over seeds 1-6: max 2.3e-4, mean
    # 3e-7, i.e. the rounding level, on images of range ~10).
    full, single = _batch_and_single(editor, [-1.0, 2.0])
    assert _close_to_float32_rounding(full.img_rec, torch.cat([s.img_rec for s in single]), 'img_rec')
    for alpha in [-1.0, 2.0]:
        diff = (full.img_edit[alpha] - torch.cat([s.img_edit[alpha] for s in single])).abs()
        print(f'img_edit[{alpha}] (mu 0.5): max abs diff {float(diff.max()):.3g}, mean {float(diff.mean()):.3g}, '
            f'fraction above 1e-5: {float((diff > 1e-5).float().mean()):.5f}')
        assert float(diff.max()) < 1e-2 and float(diff.mean()) < 1e-5

def test_e4e_only_path_is_plain_synthesis_of_edited_codes(files):
    paths, G0, _G, E = files
    editor = gse.load_editor(paths.plain, encoder=paths.encoder, device='cpu', force=True)   # untrained encoder: skip pairing
    assert editor.mode == 'e4e'
    img = _images()
    d = _direction(G0)
    out = editor.edit(img, d, [0, -2.0])
    with torch.no_grad():                          # independent: the in-memory originals, no Editor
        ws = E(img)[0]
        rec = G0.synthesis(ws, noise_mode='const')
        edited = G0.synthesis(d.apply(ws, -2.0), noise_mode='const')
        by_hand = G0.synthesis(ws - 2.0 * d.vector[:, None, :], noise_mode='const')
    assert torch.equal(out.img_rec, rec) and out.img_edit[0.0] is out.img_rec
    assert torch.equal(out.img_edit[-2.0], edited)
    assert torch.equal(out.img_edit[-2.0], by_hand)

def test_gradstyle_entry_and_encoder_override(files):
    paths, _G0, G, E = files
    img = _images(2)
    d = _direction(G)
    via_net = gse.load_editor(paths.net, device='cpu').edit(img, d, [1.0])
    via_override = gse.load_editor(paths.stages_only, encoder=paths.encoder, device='cpu', force=True).edit(img, d, [1.0])
    with torch.no_grad():
        ref = streams.run_streams(G, E, img, direction=d.vector, alpha=1.0)
    for out in [via_net, via_override]:
        assert torch.equal(out.img_rec, ref.img_rec) and torch.equal(out.img_edit[1.0], ref.img_edit)

def test_encoder_only_pickle(files, tmp_path):
    # What gradstyle-train --encoder takes (dict(encoder=E), no G) also feeds --encoder here.
    paths, _G0, G, E = files
    legacy.save_network_pkl(dict(encoder=E), str(tmp_path / 'encoder_only.pkl'))
    img = _images(2)
    out = gse.load_editor(paths.stages_only, encoder=str(tmp_path / 'encoder_only.pkl'), device='cpu', force=True).edit(  # untrained E
        img, _direction(G), [1.0])
    with torch.no_grad():
        ref = streams.run_streams(G, E, img, direction=_direction(G).vector, alpha=1.0)
    assert torch.equal(out.img_edit[1.0], ref.img_edit)

def test_directions_by_name_tensor_and_wrong_shape(files, editor, tmp_path):
    img = _images(2)
    d = _direction(editor.G, name='age')
    ed.save_directions([d], tmp_path, dataset='tiny')
    by_name = editor.edit(img, 'age', [1.0], registry_dirs=[tmp_path])
    by_tensor = editor.edit(img, d.vector[0], [1.0])
    assert torch.equal(by_name.img_edit[1.0], by_tensor.img_edit[1.0])
    with pytest.raises(ed.DirectionError, match=r'does not fit W\+ codes of shape \[8, 32\]'):
        editor.edit(img, torch.randn([7]), [1.0])
    with pytest.raises(ed.DirectionError, match='has width 64, the generator has w_dim 32'):
        editor.edit(img, ed.Direction('wide', 'custom', torch.randn([1, 64])), [1.0])
    other = ed.Direction('age', 'interfacegan', torch.randn([1, 32]), fingerprint=ed.generator_fingerprint(testing.tiny_generator(seed=1)))
    ed.save_directions([other], tmp_path / 'other', dataset='tiny')
    with pytest.raises(ed.FingerprintMismatchError, match='was made for'):
        editor.edit(img, 'age', [1.0], registry_dirs=[tmp_path / 'other'])

def test_edit_function_accepts_tensors_pil_images_and_paths(files, editor, tmp_path):
    arr = (np.random.RandomState(0).rand(32, 32, 3) * 255).astype(np.uint8)
    PIL.Image.fromarray(arr).save(tmp_path / 'x.png')
    d = _direction(editor.G)
    tensor = torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 127.5 - 1
    a = gse.edit(tensor, editor, d, 1.5)
    b = gse.edit([PIL.Image.fromarray(arr)], editor, d, 1.5)
    c = gse.edit(str(tmp_path / 'x.png'), files[0].gradstyle, d, 1.5, device='cpu')
    assert a.shape == (1, 3, 32, 32) and torch.equal(a, b) and torch.equal(a, c)
    assert torch.equal(gse.edit(tensor.contiguous(memory_format=torch.channels_last), editor, d, 1.5), a)   # deterministic, any layout
    with pytest.raises(ValueError, match=r'images must have shape \[N, 3, 32, 32\]'):
        gse.edit(torch.zeros([1, 3, 64, 64]), editor, d, 1.0)

#----------------------------------------------------------------------------
# Loader errors: one line, naming the flag.

def _error(fn, *args, **kwargs):
    with pytest.raises(dnnlib.UserError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert '\n' not in message
    return message

def test_loader_errors(files, tmp_path):
    paths, G0, _G, _E = files
    msg = _error(gse.load_editor, paths.plain, device='cpu')
    assert msg.startswith('--encoder:') and 'plain generator' in msg and 'pass --encoder' in msg
    msg = _error(gse.load_editor, paths.stages_only, device='cpu')
    assert msg.startswith('--encoder:') and 'GradStyle generator but no encoder' in msg
    assert _error(gse.load_editor, str(tmp_path / 'nope.pkl')).startswith('--network: no such file')
    assert _error(gse.load_editor, paths.plain, encoder=str(tmp_path / 'nope.pt')).startswith('--encoder: no such file')
    (tmp_path / 'junk.pkl').write_bytes(b'not a pickle')
    assert _error(gse.load_editor, str(tmp_path / 'junk.pkl')).startswith('--network: ')
    cases = dict(
        width=(tiny_encoder(w_dim=16, feature_channels=32), r'W\+ codes [8, 16], the generator takes [8, 32]'),
        rows=(tiny_encoder(num_ws=6), 'W+ codes [6, 32]'),
        resolution=(tiny_encoder(64, num_ws=8), 'inputs of at least 64x64, the generator makes 32x32'),
        features=(tiny_encoder(feature_channels=16), 'need features b8 [32], b16 [32], b32 [32] but the encoder gives b8 [16]'))
    for name, (E_bad, fragment) in cases.items():
        path = str(tmp_path / f'{name}.pkl')
        legacy.save_network_pkl(dict(G=G0, D=None, G_ema=G0, encoder=E_bad), path)
        target = paths.stages_only if name == 'features' else paths.plain
        msg = _error(gse.load_editor, target, encoder=path, device='cpu')
        assert msg.startswith('--encoder:') and fragment.replace('\\', '') in msg, (name, msg)
    torch.save({'weights': torch.zeros([2])}, tmp_path / 'not_e4e.pt')
    msg = _error(gse.load_editor, paths.plain, encoder=str(tmp_path / 'not_e4e.pt'))
    assert msg.startswith('--encoder:') and 'not an e4e checkpoint' in msg
    msg = _error(gse.load_editor, paths.plain, encoder=paths.plain)
    assert msg.startswith('--encoder:') and 'holds no encoder' in msg

#----------------------------------------------------------------------------
# Image I/O.

def _save(img, path, **kwargs):
    img.save(path, **kwargs)
    return str(path)

def _lanczos(arr, size):
    # Reference resize: PIL's Lanczos on the RGB array.
    return np.asarray(PIL.Image.fromarray(arr).resize((size, size), PIL.Image.LANCZOS))

def test_modes_and_sizes_are_converted_with_notes(tmp_path):
    rng = np.random.RandomState(0)
    rgba = (rng.rand(32, 32, 4) * 255).astype(np.uint8)
    arr, notes = gse.read_image(_save(PIL.Image.fromarray(rgba, 'RGBA'), tmp_path / 'a.png'), 32)
    expected = (rgba[..., :3].astype(np.uint32) * rgba[..., 3:] + 127) // 255                  # alpha over black, rounded
    assert np.array_equal(arr, expected.astype(np.uint8)) and notes == ['mode RGBA: alpha composited over black']

    gray = (rng.rand(32, 32) * 255).astype(np.uint8)
    arr, notes = gse.read_image(_save(PIL.Image.fromarray(gray, 'L'), tmp_path / 'g.png'), 32)
    assert np.array_equal(arr, np.repeat(gray[..., None], 3, axis=2)) and 'grayscale replicated to RGB' in notes[0]

    deep = (rng.rand(32, 32) * 65535).astype(np.uint16)
    arr, notes = gse.read_image(_save(PIL.Image.fromarray(deep), tmp_path / 'd.png'), 32)
    assert np.array_equal(arr[..., 0], np.round(deep / 257.0).astype(np.uint8)) and '16-bit scaled to 8-bit' in notes[0]

    palette = PIL.Image.fromarray((rng.rand(32, 32, 3) * 255).astype(np.uint8)).convert('P')
    arr, notes = gse.read_image(_save(palette, tmp_path / 'p.png'), 32)
    assert np.array_equal(arr, np.asarray(palette.convert('RGB'))) and 'palette expanded to RGB' in notes[0]

    wide = (rng.rand(48, 80, 3) * 255).astype(np.uint8)
    arr, notes = gse.read_image(_save(PIL.Image.fromarray(wide), tmp_path / 'w.png'), 16)
    assert np.array_equal(arr, _lanczos(wide[:, 16:64], 16))                                   # centred 48x48, then resized
    assert notes == ['center-crop 80x48 -> 48x48', 'resize 48x48 -> 16x16 (Lanczos)']

    tall = (rng.rand(40, 24, 3) * 255).astype(np.uint8)
    exif = PIL.Image.Exif()
    exif[0x0112] = 6                                                                            # "rotate 90 CW to view"
    arr, notes = gse.read_image(_save(PIL.Image.fromarray(tall), tmp_path / 'e.png', exif=exif), 24)
    upright = np.rot90(tall, k=-1)                                                              # 24 x 40, clockwise
    assert np.array_equal(arr, upright[:, 8:32]) and notes[0] == 'rotated by EXIF orientation'

    (tmp_path / 'bad.png').write_bytes(b'\x89PNG\r\n\x1a\n broken')
    with pytest.raises(SkipImage, match='cannot read image file'):
        gse.read_image(str(tmp_path / 'bad.png'), 32)

def test_folders_and_zips_list_images_and_skip_unreadable(tmp_path):
    rng = np.random.RandomState(1)
    (tmp_path / 'in' / 'sub').mkdir(parents=True)
    arrays = [(rng.rand(32, 32, 3) * 255).astype(np.uint8) for _ in range(2)]
    PIL.Image.fromarray(arrays[0]).save(tmp_path / 'in' / 'x.png')
    PIL.Image.fromarray(arrays[1]).save(tmp_path / 'in' / 'sub' / 'x.png')
    (tmp_path / 'in' / 'broken.jpg').write_bytes(b'junk')
    (tmp_path / 'in' / 'readme.txt').write_text('not an image')
    entries, ignored = gse.list_images(tmp_path / 'in')
    assert [e.name for e in entries] == ['broken.jpg', 'sub/x.png', 'x.png'] and [e.stem for e in entries] == ['broken', 'x', 'x-2']
    assert ignored == ['readme.txt']
    log = []
    imgs, names = gse.load_images(tmp_path / 'in', 32, log=log.append)
    assert names == ['sub/x.png', 'x.png'] and log == ['broken.jpg: skipped: cannot read image file (not a recognised image format, or corrupt)']
    assert torch.equal(imgs, gse.to_tensor([arrays[1], arrays[0]]))
    buf = io.BytesIO()
    PIL.Image.fromarray(arrays[0]).save(buf, format='png')
    with zipfile.ZipFile(tmp_path / 'in.zip', 'w') as zf:
        zf.writestr('a/one.png', buf.getvalue())
        zf.writestr('dataset.json', '{}')
    entries, ignored = gse.list_images(tmp_path / 'in.zip')
    assert [e.name for e in entries] == ['in.zip:a/one.png'] and ignored == ['dataset.json']
    assert np.array_equal(gse.read_image(entries[0], 32)[0], arrays[0])
    with pytest.raises(dnnlib.UserError, match='--input: no such file or folder'):
        gse.list_images(tmp_path / 'missing')

def test_to_tensor_scale():
    arr = np.array([[[0, 128, 255]]], dtype=np.uint8)
    x = gse.to_tensor([arr])
    assert x.shape == (1, 3, 1, 1) and torch.allclose(x.flatten(), torch.tensor([-1.0, 128 / 127.5 - 1, 1.0]), rtol=0, atol=1e-6)

def test_real_photo_resized_to_the_tiny_network(fixtures_dir, editor):
    path = fixtures_dir / 'images' / 'e4e_input_img.jpg'
    arr, notes = gse.read_image(str(path), 32)
    reference = np.asarray(PIL.Image.open(path).convert('RGB').resize((32, 32), PIL.Image.LANCZOS))
    assert np.array_equal(arr, reference)
    assert notes == ['resize 1024x1024 -> 32x32 (Lanczos)']
    d = _direction(editor.G)
    out = editor.edit([str(path)], d, [0.0, 3.0])
    ref = editor.edit(gse.to_tensor([reference]), d, [0.0, 3.0])
    assert torch.equal(out.img_edit[3.0], ref.img_edit[3.0]) and out.img_edit[3.0].shape == (1, 3, 32, 32)
    assert torch.isfinite(out.img_edit[3.0]).all() and torch.equal(out.img_edit[0.0], ref.img_edit[0.0])

#----------------------------------------------------------------------------
