"""Tests for gradstyle_plugin/encoder.py (e4e-compatible encoder, ArcFace IR-SE-50).

Key layouts are checked against the published key lists in shared/spec; the arithmetic of the
blocks against NumPy re-computations in float64 (direct convolution loops, explicit batch norm,
PReLU, SE, bilinear align_corners=True interpolation). Checkpoints are built in the test from
the key lists (random tensors with the published names and shapes), never downloaded.
"""

import copy
import io

import numpy as np
import pytest
import torch

from gradstyle_plugin import encoder as enc
from stylegan2_ada_pytorch import dnnlib, legacy, testing
from stylegan2_ada_pytorch.torch_utils import misc, persistence

from tests.plugin._spec_state import random_state as _random_state, spec_keys as _spec_keys

#----------------------------------------------------------------------------
# Helpers.

def _layout(module, exclude=()):
    return {k: (list(v.shape), str(v.dtype).replace('torch.', '')) for k, v in module.state_dict().items() if k not in exclude}

def _np_conv2d(x, w, b=None, stride=1, padding=0):
    # Direct cross-correlation (what torch calls conv2d), one kernel tap at a time.
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    Ho = (H + 2 * padding - kh) // stride + 1
    Wo = (W + 2 * padding - kw) // stride + 1
    out = np.zeros([N, O, Ho, Wo])
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + stride * (Ho - 1) + 1:stride, j:j + stride * (Wo - 1) + 1:stride]
            out += np.einsum('nchw,oc->nohw', patch, w[:, :, i, j])
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out

def _np_bn(x, bn):
    # Eval-mode batch norm: (x - running_mean) / sqrt(running_var + eps) * weight + bias, per channel.
    mean, var, w, b = [t.detach().numpy().reshape(1, -1, 1, 1) for t in (bn.running_mean, bn.running_var, bn.weight, bn.bias)]
    return (x - mean) / np.sqrt(var + bn.eps) * w + b

def _np_prelu(x, a):
    return np.where(x > 0, x, a.reshape(1, -1, 1, 1) * x)

def _np_se(x, se):
    s = x.mean(axis=(2, 3))                                                     # [NC]
    h = np.maximum(s @ se.fc1.weight.detach().numpy()[:, :, 0, 0].T, 0)
    g = 1 / (1 + np.exp(-(h @ se.fc2.weight.detach().numpy()[:, :, 0, 0].T)))
    return x * g[:, :, None, None]

def _np_bilinear_align_corners(x, size):
    # Separable linear interpolation with source coordinate i * (in - 1) / (out - 1).
    def axis_matrix(n_in, n_out):
        m = np.zeros([n_out, n_in])
        for i in range(n_out):
            src = i * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
            lo = int(np.floor(src))
            hi = min(lo + 1, n_in - 1)
            m[i, lo] += 1 - (src - lo)
            m[i, hi] += src - lo
        return m
    mh = axis_matrix(x.shape[2], size)
    mw = axis_matrix(x.shape[3], size)
    return np.einsum('ih,nchw,jw->ncij', mh, x, mw)

def _randomize_(module, seed=1):
    # Non-trivial BN statistics and PReLU slopes (defaults would hide mistakes).
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 0.3 + 1)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.3)
            elif isinstance(m, torch.nn.PReLU):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * 0.3)
            elif isinstance(m, torch.nn.Conv2d) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
    return module

def _small(res, seed=0, progressive_stage=None, **kwargs):
    kwargs = dict(dict(w_dim=32, feature_channels=32), **kwargs)
    extra = dict(progressive_stage=progressive_stage) if progressive_stage is not None else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return dnnlib.util.construct_class_by_name(**enc.small_encoder_kwargs(res, **kwargs), **extra).eval()

def _save(obj, path):
    torch.save(obj, path)
    return path

#----------------------------------------------------------------------------
# Key layouts.

def test_e4e_keys_and_shapes_equal_spec():
    ref = _spec_keys('e4e_keys.txt')
    assert len(ref) == 621
    with torch.device('meta'):
        E = enc.E4EEncoder(**{k: v for k, v in enc.e4e_encoder_kwargs(num_ws=18).items() if k != 'class_name'})
    mine = _layout(E, exclude=enc.EXTRA_BUFFERS)
    assert mine == ref
    assert list(mine) == list(ref)  # same order as e4e's state_dict
    assert set(E.state_dict()) - set(mine) == set(enc.EXTRA_BUFFERS)
    assert list(E.latent_avg.shape) == [18, 512]

def test_irse50_backbone_keys_equal_spec():
    ref = {k: v for k, v in _spec_keys('e4e_keys.txt').items() if k.startswith(('input_layer.', 'body.'))}
    with torch.device('meta'):
        net = enc.IRSEBackbone(**enc.IRSE50)
    assert _layout(net) == ref
    assert net.group_ends == [2, 6, 20, 23]  # taps after units 6, 20, 23 (spec section 2)

def test_arcface_keys_equal_spec():
    ref = _spec_keys('arcface_ir_se50_keys.txt')
    with torch.device('meta'):
        net = enc.ArcFaceIRSE50()
    assert _layout(net) == ref

def test_num_ws_per_generator_size():
    # 2 * log2(size) - 2, and e4e's style heads: 4 convs for c3 (16x16), 5 for p2, 6 for p1.
    assert [enc.num_ws_for_resolution(r) for r in (256, 512, 1024)] == [14, 16, 18]
    with torch.device('meta'):
        E = enc.E4EEncoder(num_ws=14)
    assert len(E.styles) == 14
    assert [len(E.styles[i].convs) // 2 for i in range(14)] == [4] * 3 + [5] * 4 + [6] * 7
    with pytest.raises(ValueError, match='power of two'):
        enc.num_ws_for_resolution(1000)

#----------------------------------------------------------------------------
# Arithmetic of the blocks against NumPy.

def test_equal_linear_matches_numpy():
    layer = enc.EqualLinear(7, 5, lr_multiplier=0.5, bias_init=0.3).double()
    with torch.no_grad():
        layer.bias.add_(torch.randn(5, dtype=torch.float64))
    x = torch.randn(3, 7, dtype=torch.float64)
    w, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    ref = x.numpy() @ (w * 0.5 / np.sqrt(7)).T + b * 0.5
    err = np.abs(layer(x).detach().numpy() - ref).max()
    print(f'EqualLinear max abs err {err:.2e}')
    assert err < 1e-12

def test_map2style_matches_numpy():
    block = enc.Map2Style(6, 5, spatial=4).double()
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn(p.shape, dtype=torch.float64) * 0.5)
    x = torch.randn(2, 6, 4, 4, dtype=torch.float64)
    h = x.numpy()
    for conv in (block.convs[0], block.convs[2]):
        h = _np_conv2d(h, conv.weight.detach().numpy(), conv.bias.detach().numpy(), stride=2, padding=1)
        h = np.where(h > 0, h, 0.01 * h)
    assert h.shape == (2, 6, 1, 1)
    ref = h.reshape(2, 6) @ (block.linear.weight.detach().numpy() / np.sqrt(6)).T + block.linear.bias.detach().numpy()
    out = block(x).detach().numpy()
    err = np.abs(out - ref).max()
    print(f'Map2Style max abs err {err:.2e}')
    assert out.shape == (2, 5) and err < 1e-10
    with pytest.raises(AssertionError):
        block(torch.randn(2, 6, 8, 8, dtype=torch.float64))  # wrong spatial size is refused

def test_se_module_matches_numpy():
    se = enc.SEModule(12, reduction=4).double()
    with torch.no_grad():
        for p in se.parameters():
            p.copy_(torch.randn(p.shape, dtype=torch.float64))
    x = torch.randn(2, 12, 5, 5, dtype=torch.float64)
    err = np.abs(se(x).detach().numpy() - _np_se(x.numpy(), se)).max()
    print(f'SE max abs err {err:.2e}')
    assert list(se.fc1.weight.shape) == [3, 12, 1, 1] and err < 1e-12

@pytest.mark.parametrize('cin,cout,stride', [(8, 8, 2), (8, 16, 2), (16, 16, 1)])
def test_bottleneck_matches_numpy(cin, cout, stride):
    unit = _randomize_(enc.BottleneckIRSE(cin, cout, stride, se_reduction=4)).double().eval()
    x = torch.randn(2, cin, 8, 8, dtype=torch.float64)
    r = unit.res_layer
    h = _np_bn(x.numpy(), r[0])
    h = _np_conv2d(h, r[1].weight.detach().numpy(), stride=1, padding=1)
    h = _np_prelu(h, r[2].weight.detach().numpy())
    h = _np_conv2d(h, r[3].weight.detach().numpy(), stride=stride, padding=1)
    h = _np_se(_np_bn(h, r[4]), r[5])
    if cin == cout:
        short = x.numpy()[:, :, ::stride, ::stride]
    else:
        s = unit.shortcut_layer
        short = _np_bn(_np_conv2d(x.numpy(), s[0].weight.detach().numpy(), stride=stride), s[1])
    ref = h + short
    out = unit(x).detach().numpy()
    err = np.abs(out - ref).max()
    print(f'bottleneck {cin}->{cout} s{stride} max abs err {err:.2e}')
    assert out.shape == (2, cout, 8 // stride, 8 // stride) and err < 1e-10

#----------------------------------------------------------------------------
# Pyramid, W+ assembly, latent_avg, progressive stage (small encoder, float64).

def _group_outputs(E, img):
    taps = {}
    handles = [E.body[i].register_forward_hook(lambda m, inp, out, i=i: taps.__setitem__(i, out)) for i in E.group_ends]
    try:
        ws, feats = E(img)
    finally:
        for h in handles:
            h.remove()
    return ws, feats, [taps[i] for i in E.group_ends]

def test_pyramid_matches_numpy():
    E = _randomize_(_small(32)).double()
    img = torch.rand(2, 3, 32, 32, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        _, feats, groups = _group_outputs(E, img)
    c1, c2, c3 = [g.numpy() for g in groups[-3:]]
    lat1 = _np_conv2d(c2, E.latlayer1.weight.detach().numpy(), E.latlayer1.bias.detach().numpy())
    lat2 = _np_conv2d(c1, E.latlayer2.weight.detach().numpy(), E.latlayer2.bias.detach().numpy())
    p2 = _np_bilinear_align_corners(c3, 16) + lat1
    p1 = _np_bilinear_align_corners(p2, 32) + lat2
    assert list(feats) == ['b8', 'b16', 'b32']
    assert np.array_equal(feats['b8'].numpy(), c3)
    err = max(np.abs(feats['b16'].numpy() - p2).max(), np.abs(feats['b32'].numpy() - p1).max())
    print(f'pyramid max abs err {err:.2e}')
    assert err < 1e-10

@pytest.mark.parametrize('stage', [None, 0, 4])
def test_ws_latent_avg_and_progressive_stage_exact(stage):
    E = _randomize_(_small(32, progressive_stage=stage))
    with torch.no_grad():
        E.latent_avg.copy_(torch.randn(E.latent_avg.shape))
    img = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ws, feats = E(img)
        levels = [feats['b8'], feats['b16'], feats['b32']]
        level_of = [0] * 3 + [1] * 4 + [2] * 1  # e4e splits at rows 3 and 7; 8 rows for 32 px
        w0 = E.styles[0](levels[0])
        k = E.num_ws - 1 if stage is None else stage
        expected = torch.stack([(w0 + E.styles[i](levels[level_of[i]]) if 1 <= i <= k else w0) + E.latent_avg[i]
            for i in range(E.num_ws)], dim=1)
    assert ws.shape == (2, 8, 32)
    assert torch.equal(ws, expected)

    # Heads beyond the stage are not used; the head of row k changes row k only.
    with torch.no_grad():
        if k < E.num_ws - 1:
            for p in E.styles[k + 1].parameters():
                p.add_(1.0)
            assert torch.equal(E(img)[0], ws)
        if k >= 1:
            E.styles[k].linear.bias.add_(1.0)
            changed = (E(img)[0] != ws).any(dim=2).any(dim=0).tolist()
            assert changed == [i == k for i in range(E.num_ws)]

def test_progressive_stage_range():
    E = _small(32)
    assert E.progressive_stage == 7
    with pytest.raises(ValueError, match='progressive_stage'):
        E.set_progressive_stage(8)

#----------------------------------------------------------------------------
# The small variant and input handling.

@pytest.mark.parametrize('res,stages,num_ws', [(32, ['b8', 'b16', 'b32'], 8), (64, ['b16', 'b32', 'b64'], 10),
    (128, ['b16', 'b32', 'b64'], 12)])
def test_small_variant_shapes(res, stages, num_ws):
    E = _small(res)
    with torch.no_grad():
        ws, feats = E(torch.rand(4, 3, res, res) * 2 - 1)
    assert ws.shape == (4, num_ws, 32)
    assert list(feats) == stages
    for name, feat in feats.items():
        r = int(name[1:])
        assert feat.shape == (4, 32, r, r)
    assert E.stage_names == stages

def test_small_variant_matches_generator_stages():
    G = testing.tiny_generator()  # 32 px, w_dim 32, stages b4..b32
    E = _small(G.img_resolution, w_dim=G.w_dim, feature_channels=32)
    assert E.num_ws == G.num_ws
    assert set(E.stage_names) <= set(G.synthesis.stage_channels)
    with torch.no_grad():
        ws, _ = E(torch.zeros(1, 3, 32, 32))
        img = G.synthesis(ws, noise_mode='const')
    assert img.shape == (1, 3, 32, 32)

def test_small_variant_bad_resolution():
    with pytest.raises(ValueError, match='img_resolution'):
        enc.small_encoder_kwargs(512)
    with pytest.raises(ValueError, match='img_resolution'):
        enc.small_encoder_kwargs(48)

def test_larger_input_is_area_resized():
    E = _randomize_(_small(32)).double()
    big = torch.rand(2, 3, 64, 64, dtype=torch.float64) * 2 - 1
    small = torch.from_numpy(big.numpy().reshape(2, 3, 32, 2, 32, 2).mean(axis=(3, 5)))
    with torch.no_grad():
        ws_big, feats_big = E(big)
        ws_small, feats_small = E(small)
    err = (ws_big - ws_small).abs().max().item()
    print(f'area resize: max abs ws diff {err:.2e}')
    assert err < 1e-10
    with pytest.raises(ValueError, match='at least 32x32'):
        E(torch.zeros(1, 3, 16, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match='square'):
        E(torch.zeros(1, 3, 32, 64, dtype=torch.float64))

def test_rebuild_from_kwargs_and_pickle_round_trip(tmp_path):
    E = _randomize_(_small(32))
    with torch.no_grad():
        E.latent_avg.normal_()
    img = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ref = E(img)[0]
        E2 = dnnlib.util.construct_class_by_name(**enc.encoder_kwargs(E)).eval()
        assert not torch.equal(E2(img)[0], ref)
        misc.copy_params_and_buffers(E, E2, require_all=True)
        assert torch.equal(E2(img)[0], ref)
        assert torch.equal(copy.deepcopy(E)(img)[0], ref)

    G = testing.tiny_generator()
    legacy.save_network_pkl(dict(G=G, D=None, G_ema=G, E=E), tmp_path / 'snap.pkl')
    E3 = legacy.load_network_pkl(tmp_path / 'snap.pkl')['E']
    assert persistence.is_persistent(E3) and type(E3) is enc.E4EEncoder
    with torch.no_grad():
        assert torch.equal(E3.eval()(img)[0], ref)

#----------------------------------------------------------------------------
# e4e checkpoints.

def _skeleton_state(keys):
    # Right names, placeholder values: enough to exercise the key checks (they run first).
    return {f'encoder.{k}': torch.zeros([1]) for k in keys}

def test_load_e4e_missing_key(tmp_path):
    state = _skeleton_state(_spec_keys('e4e_keys.txt'))
    del state['encoder.styles.5.linear.bias']
    path = _save(dict(state_dict=state, opts=dict(stylegan_size=1024)), tmp_path / 'missing.pt')
    with pytest.raises(ValueError, match=r'missing.pt: .*missing keys: styles\.5\.linear\.bias') as exc:
        enc.load_e4e_checkpoint(path)
    assert '\n' not in str(exc.value)
    with open(path, 'rb') as f:  # an open file works too, and is named in the error
        with pytest.raises(ValueError, match=r'missing.pt: .*styles\.5\.linear\.bias'):
            enc.load_e4e_checkpoint(f)

def test_load_e4e_extra_key(tmp_path):
    state = _skeleton_state(_spec_keys('e4e_keys.txt'))
    state['encoder.body.24.res_layer.0.weight'] = torch.zeros([1])
    state['decoder.style.1.weight'] = torch.zeros([1])  # ignored, not an error
    path = _save(dict(state_dict=state, opts=dict(stylegan_size=1024)), tmp_path / 'extra.pt')
    with pytest.raises(ValueError, match=r'extra.pt: .*unexpected keys: body\.24\.res_layer\.0\.weight\)$'):
        enc.load_e4e_checkpoint(path)

def test_load_e4e_wrong_shape_and_num_ws(tmp_path):
    state = _skeleton_state(_spec_keys('e4e_keys.txt'))
    path = _save(dict(state_dict=state, opts=dict(stylegan_size=1024)), tmp_path / 'shape.pt')
    with pytest.raises(ValueError, match=r'shape.pt: .*wrong shapes: input_layer\.0\.weight \[1\] \(expected \[64, 3, 3, 3\]\)'):
        enc.load_e4e_checkpoint(path)
    # stylegan_size 512 -> 16 rows: heads 16 and 17 are then unexpected.
    path = _save(dict(state_dict=state, opts=dict(stylegan_size=512)), tmp_path / 'size512.pt')
    with pytest.raises(ValueError, match=r'num_ws=16.*unexpected keys: styles\.16\.'):
        enc.load_e4e_checkpoint(path)
    with pytest.raises(ValueError, match=r'num_ws=14.*unexpected keys: styles\.14\.'):
        enc.load_e4e_checkpoint(path, num_ws=14)

def test_load_e4e_bad_files(tmp_path):
    with pytest.raises(ValueError, match='nothere.pt: file not found'):
        enc.load_e4e_checkpoint(tmp_path / 'nothere.pt')
    junk = tmp_path / 'junk.pt'
    junk.write_bytes(b'this is not a checkpoint' * 10)
    with pytest.raises(ValueError, match='junk.pt: cannot read as a weights-only torch checkpoint'):
        enc.load_e4e_checkpoint(junk)
    full = io.BytesIO()
    torch.save(dict(state_dict=_skeleton_state(['input_layer.0.weight'])), full)
    cut = tmp_path / 'cut.pt'
    cut.write_bytes(full.getvalue()[:len(full.getvalue()) // 2])
    with pytest.raises(ValueError, match='cut.pt: cannot read'):
        enc.load_e4e_checkpoint(cut)
    cases = {
        'gema.pt': (dict(g_ema={'style.1.weight': torch.zeros(1)}), 'not an e4e checkpoint'),
        'decoder.pt': (dict(state_dict={'decoder.style.1.weight': torch.zeros(1)}), 'state_dict has no encoder.\\* entries'),
        'psp.pt': (dict(state_dict=_skeleton_state(['input_layer.0.weight']), opts=dict(encoder_type='GradualStyleEncoder')),
            "encoder_type 'GradualStyleEncoder' is not supported"),
        'avg.pt': (dict(state_dict=_skeleton_state(['input_layer.0.weight']), latent_avg=torch.zeros(18, 256),
            opts=dict(stylegan_size=1024)), r'latent_avg is \[18, 256\], expected \[18, 512\] or \[512\]'),
        'list.pt': ([1, 2, 3], 'not an e4e checkpoint'),
    }
    for file_name, (obj, message) in cases.items():
        with pytest.raises(ValueError, match=f'{file_name}: {message}'):
            enc.load_e4e_checkpoint(_save(obj, tmp_path / file_name))

def test_latent_avg_shapes():
    avg = torch.randn(512)
    out = enc._e4e_latent_avg(avg, 18, 512, 'x')
    assert np.array_equal(out.numpy(), np.tile(avg.numpy()[None], (18, 1)))
    out = enc._e4e_latent_avg(avg[None], 14, 512, 'x')
    assert np.array_equal(out.numpy(), np.tile(avg.numpy()[None], (14, 1)))
    rows = torch.randn(18, 512)
    assert np.array_equal(enc._e4e_latent_avg(rows, 18, 512, 'x').numpy(), rows.numpy())
    with pytest.raises(ValueError, match='expected \\[16, 512\\]'):
        enc._e4e_latent_avg(rows, 16, 512, 'x')

@pytest.fixture(scope='module')
def e4e_checkpoint(tmp_path_factory):
    """A full-size e4e checkpoint built from the published key list (about 1 GB)."""
    keys = _spec_keys('e4e_keys.txt')
    gen = torch.Generator().manual_seed(123)
    encoder_state = _random_state(keys, gen)
    state = {f'encoder.{k}': v for k, v in encoder_state.items()}
    state['decoder.style.1.weight'] = torch.randn(4, 4, generator=gen)   # junk: must be ignored
    state['decoder.input.input'] = torch.randn(1, 8, 4, 4, generator=gen)
    state['discriminator.convs.0.0.weight'] = torch.randn(2, 3, 1, 1, generator=gen)
    latent_avg = torch.randn(18, 512, generator=gen)
    opts = dict(encoder_type='Encoder4Editing', stylegan_size=1024, start_from_latent_avg=True, dataset_type='ffhq_encode')
    path = tmp_path_factory.mktemp('e4e') / 'e4e_test.pt'
    torch.save(dict(state_dict=state, latent_avg=latent_avg, opts=opts), path)
    return path, encoder_state, latent_avg

@pytest.mark.slow
def test_load_e4e_checkpoint_full(e4e_checkpoint):
    path, encoder_state, latent_avg = e4e_checkpoint
    E, info = enc.load_e4e_checkpoint(path)
    assert info.num_ws == 18 and info.ignored_keys == 3 and info.has_latent_avg
    assert info.opts['stylegan_size'] == 1024
    loaded = E.state_dict()
    assert set(loaded) == set(encoder_state) | set(enc.EXTRA_BUFFERS)
    assert all(torch.equal(loaded[k], v) for k, v in encoder_state.items())
    assert torch.equal(E.latent_avg, latent_avg)
    assert not E.training and not any(p.requires_grad for p in E.parameters())
    assert info.encoder_kwargs.class_name == 'gradstyle_plugin.encoder.E4EEncoder'

    img = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        ws, feats = E(img)
    assert ws.shape == (1, 18, 512)
    assert {k: list(v.shape) for k, v in feats.items()} == {'b16': [1, 512, 16, 16], 'b32': [1, 512, 32, 32],
        'b64': [1, 512, 64, 64]}
    assert torch.isfinite(ws).all() and all(torch.isfinite(f).all() for f in feats.values())

#----------------------------------------------------------------------------
# ArcFace.

@pytest.mark.slow
def test_arcface_embedding_unit_norm_and_strict_load(tmp_path):
    keys = _spec_keys('arcface_ir_se50_keys.txt')
    state = _random_state(keys, torch.Generator().manual_seed(5))
    path = _save(state, tmp_path / 'model_ir_se50.pth')
    net = enc.load_arcface(path)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())
    with torch.no_grad():
        emb = net(torch.rand(2, 3, 112, 112) * 2 - 1)
    norms = emb.norm(dim=1)
    print(f'ArcFace embedding norms {norms.tolist()}')
    assert emb.shape == (2, 512) and torch.allclose(norms, torch.ones(2), atol=1e-5)
    assert not torch.allclose(emb[0], emb[1])

def test_load_arcface_errors(tmp_path):
    state = {k: torch.zeros([1]) for k in _spec_keys('arcface_ir_se50_keys.txt')}
    del state['output_layer.3.bias']
    with pytest.raises(ValueError, match=r'bad_arcface.pth: .*missing keys: output_layer\.3\.bias\)$'):
        enc.load_arcface(_save(state, tmp_path / 'bad_arcface.pth'))
    state['output_layer.3.bias'] = torch.zeros([1])
    with pytest.raises(ValueError, match=r'shape_arcface.pth: .*wrong shapes: input_layer\.0\.weight \[1\]'):
        enc.load_arcface(_save(state, tmp_path / 'shape_arcface.pth'))
    with pytest.raises(ValueError, match=r'empty.pth: not an ArcFace state_dict'):
        enc.load_arcface(_save({}, tmp_path / 'empty.pth'))

#----------------------------------------------------------------------------
