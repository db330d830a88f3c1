"""Tests for stylegan2_ada_pytorch/networks.py.

Layout: state_dict keys/shapes/kinds/order, parameter counts, block tables and pickled plain
attributes are compared with the data files dumped from NVIDIA's classes
(shared/spec/nv_keys_*.txt). Numerics are compared with float64 NumPy/SciPy implementations of
the formulas in shared/spec/toolkit-compat.md section 4, written here independently.
"""

import ast
import copy
import pickle
import re
import sys
import types

import numpy as np
import pytest
import scipy.signal
import torch

from stylegan2_ada_pytorch import dnnlib, networks, testing
from stylegan2_ada_pytorch import torch_utils
from stylegan2_ada_pytorch.torch_utils import ops
from stylegan2_ada_pytorch.torch_utils.ops import bias_act, conv2d_resample, fma, upfirdn2d
from stylegan2_ada_pytorch.torch_utils import misc, persistence

SQRT2 = np.sqrt(2)

#----------------------------------------------------------------------------
# Parsing the key files.

def _parse_value(type_name, text):
    return type_name, ast.literal_eval(text)

def parse_key_file(path):
    """-> list of configs: dict(title, G=..., D=..., g_blocks, d_blocks, attrs)."""
    configs = []
    cfg = part = None
    attr_cls = None
    section = None
    for line in path.read_text().splitlines():
        if line.startswith('##### '):
            cfg = dict(title=line[6:], g_blocks={}, d_blocks={}, attrs=[])
            configs.append(cfg)
            continue
        if cfg is None:
            continue
        m = re.match(r'^### ([GD]): \w+\s+init_kwargs=(.*)$', line)
        if m:
            part = dict(init_kwargs=ast.literal_eval(m.group(2)), keys=[])
            cfg[m.group(1)] = part
            section = 'keys'
            continue
        m = re.match(r'^# (\d+) state_dict entries; (\d+) parameter elements; (\d+) buffer elements', line)
        if m and section == 'keys':
            part.update(num_entries=int(m.group(1)), num_params=int(m.group(2)), num_buffers=int(m.group(3)))
            continue
        if line.startswith('### G.synthesis block table'):
            section = 'g_blocks'
            continue
        if line.startswith('### D block table'):
            section = 'd_blocks'
            continue
        if line.startswith('### Non-tensor attributes'):
            section = 'attrs'
            continue
        if not line.strip() or line.startswith('#'):
            continue
        if section == 'keys' and re.match(r'^[GD]\.', line):
            key, shape, kind, dtype = line.split('\t')
            part['keys'].append((key[2:], ast.literal_eval(shape), kind, dtype))
        elif section in ('g_blocks', 'd_blocks') and line.startswith('b'):
            fields = line.split('\t')
            row = {}
            for item in fields[1:]:
                k, v = item.split('=', 1) if '=' in item else ('ws', item)
                row[k] = v
            cfg[section][fields[0]] = row
        elif section == 'attrs':
            m = re.match(r'^(\w+) \(e\.g\. (.*)\):$', line)
            if m:
                attr_cls = dict(cls=m.group(1), path=m.group(2), attrs={})
                cfg['attrs'].append(attr_cls)
                continue
            m = re.match(r'^\s+(\w+) = ([\w.]+)\((.*)\)$', line)
            if m:
                attr_cls['attrs'][m.group(1)] = _parse_value(m.group(2), m.group(3))
    return configs

@pytest.fixture(scope='module')
def keys_256(spec_dir):
    path = spec_dir / 'nv_keys_256.txt'
    configs = parse_key_file(path)
    assert len(configs) == 2
    return configs

@pytest.fixture(scope='module')
def keys_1024(spec_dir):
    path = spec_dir / 'nv_keys_1024.txt'
    configs = parse_key_file(path)
    assert len(configs) == 1
    return configs[0]

def _build(cfg):
    with torch.random.fork_rng(devices=[]):
        G = networks.Generator(**cfg['G']['init_kwargs']).eval().requires_grad_(False)
        D = networks.Discriminator(**cfg['D']['init_kwargs']).eval().requires_grad_(False)
    return G, D

@pytest.fixture(scope='module')
def nets_256(keys_256):
    return [(cfg, *_build(cfg)) for cfg in keys_256]

@pytest.fixture(scope='module')
def nets_1024(keys_1024):
    return (keys_1024, *_build(keys_1024))

#----------------------------------------------------------------------------
# Structure checks, shared by the 256 (A, B) and 1024 configs.

def _our_keys(module):
    rows = []
    for key, t in module.state_dict(keep_vars=True).items():
        kind = 'param' if isinstance(t, torch.nn.Parameter) else 'buffer'
        rows.append((key, list(t.shape), kind, str(t.dtype).replace('torch.', '')))
    return rows

def _check_keys(cfg, G, D):
    for name, net in (('G', G), ('D', D)):
        expected = cfg[name]['keys']
        ours = _our_keys(net)
        assert len(ours) == cfg[name]['num_entries'] == len(expected)
        for got, want in zip(ours, expected):
            assert got == tuple(want) or got == list(want), f'{name}: {got} != {want}'
        assert sum(p.numel() for p in net.parameters()) == cfg[name]['num_params']
        assert sum(b.numel() for b in net.buffers()) == cfg[name]['num_buffers']

def _check_blocks(cfg, G, D):
    assert [f'b{r}' for r in G.synthesis.block_resolutions] == list(cfg['g_blocks'])
    for stage, row in cfg['g_blocks'].items():
        block = getattr(G.synthesis, stage)
        assert block.in_channels == int(row['in'])
        assert block.conv1.weight.shape[0] == int(row['out'])
        assert G.synthesis.stage_channels[stage] == int(row['out'])
        assert block.num_conv == int(row['num_conv'])
        assert block.num_torgb == int(row['num_torgb'])
        assert block.use_fp16 == (row['use_fp16'] == 'True')
    assert [f'b{r}' for r in D.block_resolutions] == list(cfg['d_blocks'])
    for stage, row in cfg['d_blocks'].items():
        block = getattr(D, stage)
        assert block.in_channels == int(row['in'])
        assert block.conv0.weight.shape[0] == int(row['tmp'])
        assert block.conv1.weight.shape[0] == int(row['out'])
        assert block.use_fp16 == (row['use_fp16'] == 'True')
        assert block.first_layer_idx == int(row['first_layer_idx'])
        assert block.num_layers == int(row['num_layers'])

_G_CLASSES = {'Generator', 'SynthesisNetwork', 'SynthesisBlock', 'SynthesisLayer', 'FullyConnectedLayer', 'ToRGBLayer', 'MappingNetwork'}
_PY_TYPES = dict(int=int, bool=bool, str=str, float=float, list=list, tuple=tuple, dict=dict, NoneType=type(None))

def _plain_attrs(module):
    # What the pickle stores besides torch internals: public plain attributes.
    return {k: v for k, v in module.__dict__.items() if not k.startswith('_') and k != 'training'}

def _check_attrs(cfg, G, D):
    assert len(cfg['attrs']) == 12
    for entry in cfg['attrs']:
        root = G if entry['cls'] in _G_CLASSES else D
        module = root if entry['path'] == '<root>' else root.get_submodule(entry['path'])
        assert type(module).__name__ == entry['cls']
        expected = dict(entry['attrs'])
        init_args = expected.pop('_init_args')[1]
        init_kwargs = expected.pop('_init_kwargs')[1]
        assert module._init_args == init_args
        assert list(module._init_kwargs.items()) == list(init_kwargs.items()), entry['cls']
        ours = _plain_attrs(module)
        assert set(ours) == set(expected), entry['cls']
        for name, (type_name, value) in expected.items():
            got = ours[name]
            if type_name == 'numpy.float64':
                # NVIDIA stores numpy.float64; we store Python floats (no numpy globals in pickles).
                assert type(got) is float and got == pytest.approx(value, rel=1e-9), (entry['cls'], name)
            else:
                assert type(got) is _PY_TYPES[type_name] and got == value, (entry['cls'], name, got, value)

def test_keys_256(nets_256):
    for cfg, G, D in nets_256:
        _check_keys(cfg, G, D)

def test_blocks_256(nets_256):
    for cfg, G, D in nets_256:
        _check_blocks(cfg, G, D)
        assert G.num_ws == G.synthesis.num_ws == G.mapping.num_ws == 14

def test_attrs_256(nets_256):
    for cfg, G, D in nets_256:
        _check_attrs(cfg, G, D)

def test_keys_blocks_attrs_1024(nets_1024):
    cfg, G, D = nets_1024
    _check_keys(cfg, G, D)
    _check_blocks(cfg, G, D)
    _check_attrs(cfg, G, D)
    assert G.num_ws == 18

def test_ws_windows_follow_the_spec():
    # Spec 4.8: block j gets ws[:, k_j : k_j + num_conv_j + num_torgb_j], k_{j+1} = k_j + num_conv_j.
    # Record what each block receives through a transient injector (it is given the block's ws).
    G = testing.tiny_generator()
    expected = {'b4': (0, 2), 'b8': (1, 4), 'b16': (3, 6), 'b32': (5, 8)}
    ws = torch.arange(G.num_ws, dtype=torch.float32).reshape(1, -1, 1).repeat(2, 1, G.w_dim)
    seen = {}
    class Probe(torch.nn.Module):
        def forward(self, x, img, *, stage, ws, **kw):
            seen[stage] = ws[0, :, 0].tolist()
            return x, img
    handles = [G.synthesis.register_injector(stage, Probe()) for stage in G.synthesis.stages]
    G.synthesis(ws, noise_mode='const')
    for h in handles:
        h.remove()
    assert seen == {stage: list(map(float, range(a, b))) for stage, (a, b) in expected.items()}

def test_tiny_generator_matches_anchor():
    # ANCHORS 4.5: NVIDIA's code gives 47,787 parameters for this configuration.
    G = testing.tiny_generator()
    assert sum(p.numel() for p in G.parameters()) == 47787
    assert G.synthesis.stages == ['b4', 'b8', 'b16', 'b32']
    assert not G.training and not any(p.requires_grad for p in G.parameters())
    assert G.init_kwargs.synthesis_kwargs == dict(channel_base=256, channel_max=32, num_fp16_res=0)
    G2 = testing.tiny_generator()
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), G2.state_dict().values()))

def test_plain_networks_have_no_extra_state():
    G = testing.tiny_generator()
    assert not any('injectors' in k for k in G.state_dict())
    assert set(_plain_attrs(G.synthesis)) == {'w_dim', 'img_resolution', 'img_resolution_log2', 'img_channels', 'block_resolutions', 'num_ws'}

#----------------------------------------------------------------------------
# NumPy references (float64).

def np_lrelu(x, gain=SQRT2):
    return np.where(x >= 0, x, 0.2 * x) * gain

def np_fir_taps(taps=(1, 3, 3, 1)):
    f = np.outer(taps, taps).astype(np.float64)
    return f / f.sum()

def np_conv(x, w, pad, true_conv):
    """x [I,H,W], w [O,I,k,k], pad (before, after) -> [O,H',W'] (valid after padding)."""
    x = np.pad(x, [(0, 0), pad, pad])
    op = scipy.signal.convolve2d if true_conv else scipy.signal.correlate2d
    return np.stack([sum(op(x[i], w[o, i], mode='valid') for i in range(x.shape[0])) for o in range(w.shape[0])])

def np_fir(x, f, pad=(0, 0), down=1):
    """Per-channel FIR (true convolution) with padding, then keep every `down`-th sample."""
    x = np.pad(x, [(0, 0), pad, pad])
    y = np.stack([scipy.signal.convolve2d(c, f, mode='valid') for c in x])
    return y[:, ::down, ::down]

def np_zero_insert(x, up=2):
    y = np.zeros([x.shape[0], x.shape[1] * up, x.shape[2] * up])
    y[:, ::up, ::up] = x
    return y

def np_conv_resample(x, w, up=1, down=1, padding=0, true_conv=False, taps=(1, 3, 3, 1)):
    # Spec 5.2: zero-insert, pad, FIR * up^2, convolve, FIR + decimate.
    f = np_fir_taps(taps)
    fw = f.shape[0]
    p0 = p1 = padding
    if up > 1:
        x = np_zero_insert(x, up)
        p0, p1 = p0 + (fw + up - 1) // 2, p1 + (fw - up) // 2
        x = np_fir(x, f * up * up, pad=(p0, p1))
        p0 = p1 = 0
    if down > 1:
        p0, p1 = p0 + (fw - down + 1) // 2, p1 + (fw - down) // 2
    y = np_conv(x, w, (p0, p1), true_conv)
    if down > 1:
        y = np_fir(y, f, down=down)
    return y

def np_fc(x, weight, bias, lr=1.0, act='linear'):
    y = x @ (weight * (lr / np.sqrt(weight.shape[1]))).T
    if bias is not None:
        y = y + bias * lr
    return np_lrelu(y) if act == 'lrelu' else y

def np_modconv(x, weight, styles, demodulate=True, padding=0, up=1, noise=None):
    out = []
    for n in range(x.shape[0]):
        w = weight * styles[n][None, :, None, None]
        if demodulate:
            w = w / np.sqrt((w ** 2).sum(axis=(1, 2, 3), keepdims=True) + 1e-8)
        out.append(np_conv_resample(x[n], w, up=up, padding=padding, true_conv=(up > 1)))
    out = np.stack(out)
    return out + noise if noise is not None else out

def np_minibatch_std(x, group_size, num_channels=1):
    # Brute force: group g holds samples g, g + N/G, g + 2N/G, ... (grouping by stride).
    N, C, H, W = x.shape
    G = N if group_size is None else min(group_size, N)
    n = N // G
    c = C // num_channels
    stat = np.zeros([n, num_channels])
    for g in range(n):
        members = x[g::n]
        assert len(members) == G
        for f in range(num_channels):
            block = members[:, f * c:(f + 1) * c]
            stat[g, f] = np.sqrt(block.var(axis=0) + 1e-8).mean()
    extra = np.stack([np.broadcast_to(stat[k % n][:, None, None], [num_channels, H, W]) for k in range(N)])
    return np.concatenate([x, extra], axis=1)

def t2np(t):
    return t.detach().to(torch.float64).numpy()

#----------------------------------------------------------------------------
# Numerics.

def test_normalize_2nd_moment():
    x = torch.randn(5, 7) * 3
    ref = t2np(x) / np.sqrt((t2np(x) ** 2).mean(axis=1, keepdims=True) + 1e-8)
    np.testing.assert_allclose(t2np(networks.normalize_2nd_moment(x)), ref, rtol=1e-5, atol=1e-6)

@pytest.mark.parametrize('demodulate', [True, False])
@pytest.mark.parametrize('fused', [True, False])
def test_modulated_conv2d_vs_numpy(demodulate, fused):
    x = torch.randn(3, 4, 6, 6)
    weight = torch.randn(5, 4, 3, 3)
    styles = torch.randn(3, 4)
    noise = torch.randn(3, 1, 6, 6) * 0.3
    got = networks.modulated_conv2d(x, weight, styles, noise=noise, padding=1, demodulate=demodulate, fused_modconv=fused)
    ref = np_modconv(t2np(x), t2np(weight), t2np(styles), demodulate=demodulate, padding=1, noise=t2np(noise))
    err = np.abs(t2np(got) - ref).max()
    print(f'modulated_conv2d demod={demodulate} fused={fused}: max abs err {err:.2e}')
    assert err < 1e-4 * max(1, np.abs(ref).max())

def test_modulated_conv2d_fused_equals_nonfused_with_up_and_noise():
    x = torch.randn(2, 4, 5, 5)
    weight = torch.randn(3, 4, 3, 3)
    styles = torch.randn(2, 4)
    f = networks.upfirdn2d.setup_filter([1, 3, 3, 1])
    noise = torch.randn(2, 1, 10, 10)
    a = networks.modulated_conv2d(x, weight, styles, noise=noise, up=2, padding=1, resample_filter=f, flip_weight=False, fused_modconv=True)
    b = networks.modulated_conv2d(x, weight, styles, noise=noise, up=2, padding=1, resample_filter=f, flip_weight=False, fused_modconv=False)
    assert a.shape == (2, 3, 10, 10)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)

def test_modulated_conv2d_fp16_guard_keeps_result():
    # Spec 4.1 step 1: with fp16 input the rescaling cancels in the demodulation. Large weights
    # and styles would overflow fp16 without it.
    x = torch.randn(2, 4, 6, 6)
    weight = torch.randn(5, 4, 3, 3) * 300
    styles = torch.randn(2, 4) * 300
    ref = np_modconv(t2np(x), t2np(weight), t2np(styles), padding=1)
    for fused in (True, False):
        got = networks.modulated_conv2d(x.half(), weight, styles, padding=1, fused_modconv=fused)
        assert got.dtype == torch.float16 and torch.isfinite(got).all()
        err = np.abs(t2np(got) - ref).max()
        print(f'fp16 modulated_conv2d fused={fused}: max abs err {err:.2e}')
        assert err < 2e-2 * max(1, np.abs(ref).max())

def test_fully_connected_layer():
    fc = networks.FullyConnectedLayer(6, 4, activation='lrelu', lr_multiplier=0.1, bias_init=0.5)
    with torch.no_grad():
        fc.bias.add_(torch.randn(4))
    x = torch.randn(3, 6)
    ref = np_fc(t2np(x), t2np(fc.weight), t2np(fc.bias), lr=0.1, act='lrelu')
    np.testing.assert_allclose(t2np(fc(x)), ref, rtol=1e-5, atol=1e-6)
    lin = networks.FullyConnectedLayer(6, 4, bias_init=1)
    np.testing.assert_allclose(t2np(lin(x)), np_fc(t2np(x), t2np(lin.weight), t2np(lin.bias)), rtol=1e-5, atol=1e-6)
    assert type(fc.weight_gain) is float and fc.bias_gain == 0.1

def test_synthesis_layer_up2_vs_zero_insert_fir_true_conv():
    torch.manual_seed(1)
    layer = networks.SynthesisLayer(3, 4, w_dim=5, resolution=8, up=2, conv_clamp=0.5)
    with torch.no_grad():
        layer.noise_strength.fill_(0.7)
        layer.bias.copy_(torch.randn(4) * 0.1)
        layer.affine.bias.add_(torch.randn(3))
    x = torch.randn(2, 3, 4, 4)
    w = torch.randn(2, 5)
    styles = np_fc(t2np(w), t2np(layer.affine.weight), t2np(layer.affine.bias))
    for fused in (True, False):
        got = layer(x, w, noise_mode='const', fused_modconv=fused)
        noise = t2np(layer.noise_const) * 0.7
        y = np_modconv(t2np(x), t2np(layer.weight), styles, padding=1, up=2, noise=noise)
        ref = np.clip(np_lrelu(y + t2np(layer.bias)[None, :, None, None]), -0.5, 0.5)
        err = np.abs(t2np(got) - ref).max()
        print(f'SynthesisLayer up=2 fused={fused}: max abs err {err:.2e}')
        assert err < 1e-5

def test_synthesis_layer_up1_and_noise_modes():
    layer = networks.SynthesisLayer(3, 4, w_dim=5, resolution=6)
    with torch.no_grad():
        layer.noise_strength.fill_(0.5)
    x = torch.randn(2, 3, 6, 6)
    w = torch.randn(2, 5)
    styles = np_fc(t2np(w), t2np(layer.affine.weight), t2np(layer.affine.bias))
    base = np_modconv(t2np(x), t2np(layer.weight), styles, padding=1)
    bias = t2np(layer.bias)[None, :, None, None]
    np.testing.assert_allclose(t2np(layer(x, w, noise_mode='none')), np_lrelu(base + bias), atol=1e-5)
    np.testing.assert_allclose(t2np(layer(x, w, noise_mode='const')), np_lrelu(base + 0.5 * t2np(layer.noise_const) + bias), atol=1e-5)
    torch.manual_seed(3)
    r1 = layer(x, w, noise_mode='random')
    torch.manual_seed(3)
    noise = torch.randn([2, 1, 6, 6])
    np.testing.assert_allclose(t2np(r1), np_lrelu(base + 0.5 * t2np(noise) + bias), atol=1e-5)
    assert not torch.equal(layer(x, w, noise_mode='random'), layer(x, w, noise_mode='random'))
    with pytest.raises(ValueError, match='noise_mode'):
        layer(x, w, noise_mode='fixed')

def test_torgb_layer():
    layer = networks.ToRGBLayer(4, 3, w_dim=5, conv_clamp=0.3)
    with torch.no_grad():
        layer.bias.copy_(torch.randn(3) * 0.1)
    x = torch.randn(2, 4, 5, 5)
    w = torch.randn(2, 5)
    styles = np_fc(t2np(w), t2np(layer.affine.weight), t2np(layer.affine.bias)) / np.sqrt(4)
    wt = t2np(layer.weight)[:, :, 0, 0]
    ref = np.einsum('oi,ni,nihw->nohw', wt, styles, t2np(x)) + t2np(layer.bias)[None, :, None, None]
    for fused in (True, False):
        np.testing.assert_allclose(t2np(layer(x, w, fused_modconv=fused)), np.clip(ref, -0.3, 0.3), atol=1e-5)

def test_synthesis_block_image_path():
    # Skip architecture: img_out = upsample2d(img_in) + torgb(x_out, last w); the upsampling is
    # zero insertion + FIR [1,3,3,1] (gain 4) padded [2, 1] (spec 5.2).
    G = testing.tiny_generator()
    block = G.synthesis.b16
    x = torch.randn(2, 32, 8, 8)
    img = torch.randn(2, 3, 8, 8)
    ws = torch.randn(2, 3, 32)
    x_out, img_out = block(x, img, ws, noise_mode='const')
    up = np.stack([np_fir(np_zero_insert(t2np(img[n])), np_fir_taps() * 4, pad=(2, 1)) for n in range(2)])
    rgb = block.torgb(x_out, ws[:, 2], fused_modconv=True)
    np.testing.assert_allclose(t2np(img_out), up + t2np(rgb), rtol=1e-5, atol=1e-5)
    assert x_out.shape == (2, 16, 16, 16) and img_out.dtype == torch.float32

def test_conv2d_layer_down2_and_frozen_buffers():
    layer = networks.Conv2dLayer(3, 4, kernel_size=3, activation='lrelu', down=2)
    with torch.no_grad():
        layer.bias.copy_(torch.randn(4))
    x = torch.randn(2, 3, 8, 8)
    w = t2np(layer.weight) / np.sqrt(3 * 9)
    ref = np.stack([np_conv_resample(t2np(x[n]), w, down=2, padding=1) for n in range(2)])
    ref = np_lrelu(ref + t2np(layer.bias)[None, :, None, None]) * 0.5
    got = layer(x, gain=0.5)
    assert got.shape == (2, 4, 4, 4)
    np.testing.assert_allclose(t2np(got), ref, atol=1e-5)

    frozen = networks.Conv2dLayer(3, 4, kernel_size=3, trainable=False)
    assert list(dict(frozen.named_parameters())) == []
    assert sorted(dict(frozen.named_buffers())) == ['bias', 'resample_filter', 'weight']
    D = networks.Discriminator(c_dim=0, img_resolution=32, img_channels=3, channel_base=256, channel_max=32,
        block_kwargs=dict(freeze_layers=5))
    D_ref = networks.Discriminator(c_dim=0, img_resolution=32, img_channels=3, channel_base=256, channel_max=32)
    assert sorted(D.state_dict()) == sorted(D_ref.state_dict())
    frozen_layers = {name.rsplit('.', 1)[0] for name, _ in D.named_buffers() if name.endswith('.weight')}
    assert frozen_layers == {'b32.fromrgb', 'b32.conv0', 'b32.conv1', 'b32.skip', 'b16.conv0'}

def _np_mapping(G_map, z, c=None):
    x = t2np(z)
    x = x / np.sqrt((x ** 2).mean(axis=1, keepdims=True) + 1e-8)
    if c is not None:
        y = np_fc(t2np(c), t2np(G_map.embed.weight), t2np(G_map.embed.bias))
        y = y / np.sqrt((y ** 2).mean(axis=1, keepdims=True) + 1e-8)
        x = np.concatenate([x, y], axis=1)
    for idx in range(G_map.num_layers):
        fc = getattr(G_map, f'fc{idx}')
        x = np_fc(x, t2np(fc.weight), t2np(fc.bias), lr=0.01, act='lrelu')
    return x

def test_mapping_network_forward_and_truncation():
    m = networks.MappingNetwork(z_dim=6, c_dim=3, w_dim=5, num_ws=4, num_layers=3)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        m.w_avg.copy_(torch.randn(5))
    m.eval()
    z, c = torch.randn(4, 6), torch.randn(4, 3)
    w = _np_mapping(m, z, c)
    got = m(z, c)
    assert got.shape == (4, 4, 5)
    np.testing.assert_allclose(t2np(got), np.repeat(w[:, None], 4, axis=1), rtol=1e-4, atol=1e-5)
    avg = t2np(m.w_avg)
    trunc = avg + 0.7 * (w - avg)
    np.testing.assert_allclose(t2np(m(z, c, truncation_psi=0.7)), np.repeat(trunc[:, None], 4, axis=1), rtol=1e-4, atol=1e-5)
    cut = t2np(m(z, c, truncation_psi=0.7, truncation_cutoff=2))
    np.testing.assert_allclose(cut[:, :2], np.repeat(trunc[:, None], 2, axis=1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cut[:, 2:], np.repeat(w[:, None], 2, axis=1), rtol=1e-4, atol=1e-5)

def test_mapping_network_w_avg_update_rules():
    m = networks.MappingNetwork(z_dim=6, c_dim=0, w_dim=5, num_ws=2, num_layers=2, w_avg_beta=0.9)
    z = torch.randn(8, 6)
    w = _np_mapping(m, z)
    start = torch.randn(5)

    def run(training, **kw):
        m.w_avg.copy_(start)
        m.train(training)
        m(z, None, **kw)
        return t2np(m.w_avg)

    updated = w.mean(axis=0) + 0.9 * (t2np(start) - w.mean(axis=0))
    np.testing.assert_allclose(run(True), updated, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run(False), t2np(start))
    np.testing.assert_allclose(run(True, skip_w_avg_update=True), t2np(start))
    np.testing.assert_allclose(run(False, update_emas=True), updated, rtol=1e-5, atol=1e-6)   # sg3 keyword
    np.testing.assert_allclose(run(True, update_emas=False), t2np(start))
    G = testing.tiny_generator()
    before = G.mapping.w_avg.clone()
    G.train()
    G(torch.randn(2, 32), None, skip_w_avg_update=True)
    assert torch.equal(G.mapping.w_avg, before)
    G(torch.randn(2, 32), None, update_emas=True)
    assert not torch.equal(G.mapping.w_avg, before)

def test_minibatch_std_groups_by_stride():
    x = torch.randn(6, 4, 3, 3)
    for group_size, num_channels in [(3, 1), (2, 2), (None, 1), (8, 1)]:
        layer = networks.MinibatchStdLayer(group_size=group_size, num_channels=num_channels)
        np.testing.assert_allclose(t2np(layer(x)), np_minibatch_std(t2np(x), group_size, num_channels), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match='divisible'):
        networks.MinibatchStdLayer(group_size=4)(x)

def test_discriminator_epilogue_with_cmap():
    torch.manual_seed(2)
    ep = networks.DiscriminatorEpilogue(4, cmap_dim=3, resolution=4, img_channels=3, mbstd_group_size=2)
    with torch.no_grad():
        for p in ep.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x, cmap = torch.randn(4, 4, 4, 4), torch.randn(4, 3)
    y = np_minibatch_std(t2np(x), 2)
    y = np.stack([np_conv(y[n], t2np(ep.conv.weight) / np.sqrt(5 * 9), (1, 1), False) for n in range(4)])
    y = np_lrelu(y + t2np(ep.conv.bias)[None, :, None, None])
    y = np_fc(y.reshape(4, -1), t2np(ep.fc.weight), t2np(ep.fc.bias), act='lrelu')
    y = np_fc(y, t2np(ep.out.weight), t2np(ep.out.bias))
    ref = (y * t2np(cmap)).sum(axis=1, keepdims=True) / np.sqrt(3)
    got = ep(x, None, cmap)
    assert got.shape == (4, 1)
    np.testing.assert_allclose(t2np(got), ref, rtol=1e-4, atol=1e-5)

def test_conditional_discriminator_runs():
    D = testing.tiny_discriminator(c_dim=4)
    assert D.mapping.num_ws is None and 'w_avg' not in dict(D.mapping.named_buffers())
    assert D.b4.cmap_dim == 32
    out = D(torch.randn(2, 3, 32, 32), torch.randn(2, 4))
    assert out.shape == (2, 1) and out.dtype == torch.float32

#----------------------------------------------------------------------------
# fp16, architectures, persistence.

def _fp16_pair():
    G16 = testing.tiny_generator(synthesis_kwargs=dict(num_fp16_res=2, conv_clamp=256))
    G32 = testing.tiny_generator(synthesis_kwargs=dict(num_fp16_res=0, conv_clamp=256))
    misc.copy_params_and_buffers(G16, G32, require_all=True)
    return G16, G32

def test_fp16_config_runs_fp32_on_cpu_and_force_fp32_is_honoured():
    G16, G32 = _fp16_pair()
    assert [G16.synthesis.b16.use_fp16, G16.synthesis.b32.use_fp16, G16.synthesis.b8.use_fp16] == [True, True, False]
    z = torch.randn(2, 32)
    ref = G32(z, None, noise_mode='const')
    torch.testing.assert_close(G16(z, None, noise_mode='const'), ref, rtol=0, atol=0)          # auto fp32 off CUDA
    torch.testing.assert_close(G16(z, None, noise_mode='const', force_fp32=True), ref, rtol=0, atol=0)
    half = G16(z, None, noise_mode='const', force_fp32=False)                                    # insist on fp16
    assert half.dtype == torch.float32 and not torch.equal(half, ref)
    err = (half - ref).abs().max().item()
    print(f'fp16 blocks on CPU vs fp32: max abs err {err:.2e}')
    assert err < 5e-2

    ws = G16.mapping(z, None)
    x4, img4 = G16.synthesis.b4(None, None, ws[:, 0:2])
    x8, img8 = G16.synthesis.b8(x4, img4, ws[:, 1:4])
    x16, img16 = G16.synthesis.b16(x8, img8, ws[:, 3:6], force_fp32=False)
    assert x16.dtype == torch.float16 and img16.dtype == torch.float32
    x16b, _ = G16.synthesis.b16(x8, img8, ws[:, 3:6])
    assert x16b.dtype == torch.float32

def test_fp16_channels_last_and_discriminator_fp16():
    G = testing.tiny_generator(synthesis_kwargs=dict(num_fp16_res=2, conv_clamp=256, fp16_channels_last=True))
    assert G.synthesis.b32.channels_last and G.synthesis.b32.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    img = G(torch.randn(2, 32), None, noise_mode='const', force_fp32=False)
    assert img.dtype == torch.float32 and img.is_contiguous()
    D16 = testing.tiny_discriminator(num_fp16_res=2, conv_clamp=256)
    D32 = testing.tiny_discriminator(num_fp16_res=0, conv_clamp=256)
    misc.copy_params_and_buffers(D16, D32, require_all=True)
    img = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(D16(img, None), D32(img, None), rtol=0, atol=0)
    x, _ = D16.b32(None, img, force_fp32=False)
    assert x.dtype == torch.float16
    torch.testing.assert_close(D16(img, None, force_fp32=False), D32(img, None), rtol=5e-2, atol=5e-2)

@pytest.mark.parametrize('architecture', ['orig', 'skip', 'resnet'])
def test_architectures(architecture):
    G = testing.tiny_generator(synthesis_kwargs=dict(architecture=architecture))
    has_torgb = [hasattr(getattr(G.synthesis, s), 'torgb') for s in G.synthesis.stages]
    assert has_torgb == ([True] * 4 if architecture == 'skip' else [False, False, False, True])
    assert hasattr(G.synthesis.b8, 'skip') == (architecture == 'resnet')
    assert G.num_ws == 8
    img = G(torch.randn(2, 32), None, noise_mode='const')
    assert img.shape == (2, 3, 32, 32) and torch.isfinite(img).all()
    D = testing.tiny_discriminator(architecture=architecture)
    assert D(img, None).shape == (2, 1)

def test_fused_modconv_default_matches_explicit():
    G = testing.tiny_generator()
    z = torch.randn(3, 32)
    a = G(z, None, noise_mode='const')                       # eval + fp32 -> fused
    b = G(z, None, noise_mode='const', fused_modconv=False)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)

def test_noise_modes_generator():
    G = testing.tiny_generator()
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith('noise_strength'):
                p.fill_(0.3)
    z = torch.randn(2, 32)
    assert torch.equal(G(z, None, noise_mode='const'), G(z, None, noise_mode='const'))
    assert not torch.equal(G(z, None, noise_mode='random'), G(z, None, noise_mode='random'))
    Gz = copy.deepcopy(G)
    for name, b in Gz.named_buffers():
        if name.endswith('noise_const'):
            b.zero_()
    torch.testing.assert_close(Gz(z, None, noise_mode='const'), G(z, None, noise_mode='none'), rtol=0, atol=1e-6)

def test_truncation_through_generator():
    G = testing.tiny_generator()
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn(32))
    z = torch.randn(2, 32)
    ws = G.mapping(z, None)
    wt = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=3)
    torch.testing.assert_close(wt[:, :3], G.mapping.w_avg + 0.5 * (ws[:, :3] - G.mapping.w_avg))
    torch.testing.assert_close(wt[:, 3:], ws[:, 3:])
    torch.testing.assert_close(G(z, None, truncation_psi=0.5, truncation_cutoff=3, noise_mode='const'),
        G.synthesis(wt, noise_mode='const'))

def test_pickle_round_trip_and_rebuild():
    G = testing.tiny_generator(synthesis_kwargs=dict(num_fp16_res=2, conv_clamp=256))
    D = testing.tiny_discriminator()
    z = torch.randn(2, 32)
    # Our own pickle, written with our own global names: plain pickle.loads is fine for it.
    data = pickle.loads(persistence.dumps(dict(G=G, D=D), toolkit_names=False))  # safe: bytes this test just made
    G2, D2 = data['G'], data['D']
    assert type(G2) is type(G) and G2.init_kwargs == G.init_kwargs
    torch.testing.assert_close(G2(z, None, noise_mode='const'), G(z, None, noise_mode='const'), rtol=0, atol=0)
    img = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(D2(img, None), D(img, None), rtol=0, atol=0)
    G3 = type(G)(**G.init_kwargs).eval().requires_grad_(False)
    misc.copy_params_and_buffers(G, G3, require_all=True)
    torch.testing.assert_close(G3(z, None, noise_mode='const'), G(z, None, noise_mode='const'), rtol=0, atol=0)

def test_stored_source_uses_toolkit_names_only():
    # The embedded source must run under NVIDIA's torch_utils/dnnlib (spec 2.3).
    src = networks.Generator._orig_module_src
    imports = [line.strip() for line in src.splitlines() if re.match(r'^\s*(from|import)\s', line)]
    assert imports == ['import itertools', 'import weakref', 'import numpy as np', 'import torch',
        'from torch_utils import misc, persistence', 'from torch_utils.ops import bias_act, conv2d_resample, fma, upfirdn2d',
        'import dnnlib']
    # persistence.is_persistent exists in NVIDIA's persistence.py as well (it checks injector classes).
    allowed = {'misc.profiled_function', 'misc.assert_shape', 'misc.suppress_tracer_warnings', 'persistence.persistent_class',
        'persistence.is_persistent',
        'conv2d_resample.conv2d_resample', 'upfirdn2d.setup_filter', 'upfirdn2d.upsample2d', 'upfirdn2d.downsample2d',
        'bias_act.bias_act', 'bias_act.activation_funcs', 'fma.fma', 'dnnlib.util', 'dnnlib.EasyDict'}
    used = set(re.findall(r'\b(?:misc|persistence|conv2d_resample|upfirdn2d|bias_act|fma|dnnlib)\.\w+', src))
    assert used <= allowed, used - allowed

#----------------------------------------------------------------------------

def test_stored_source_runs_standalone_under_toolkit_names(monkeypatch):
    # What NVIDIA's loader does with the stored source: exec it in a fresh module whose imports
    # resolve through top-level `torch_utils` and `dnnlib` (here aliases of our own packages).
    aliases = {'torch_utils': torch_utils, 'torch_utils.misc': misc, 'torch_utils.persistence': persistence,
        'torch_utils.ops': ops, 'torch_utils.ops.bias_act': bias_act, 'torch_utils.ops.conv2d_resample': conv2d_resample,
        'torch_utils.ops.fma': fma, 'torch_utils.ops.upfirdn2d': upfirdn2d, 'dnnlib': dnnlib, 'dnnlib.util': dnnlib.util}
    for name, module in aliases.items():
        monkeypatch.setitem(sys.modules, name, module)
    src = networks.Generator._orig_module_src
    module = types.ModuleType('_stored_networks_under_test')
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(persistence._module_to_src_dict, module, src)
    exec(compile(src, '<stored networks.py>', 'exec'), module.__dict__)  # safe: bytes this test just made

    G = testing.tiny_generator(synthesis_kwargs=dict(num_fp16_res=2, conv_clamp=256,
        injector_kwargs={'b16': [testing.zero_conv_spec(16)]}))
    with torch.no_grad():
        G.synthesis.injectors.b16[0].conv.weight.normal_()
    G_exec = module.Generator(**G.init_kwargs).eval().requires_grad_(False)
    assert type(G_exec).__module__ == module.__name__ and type(G_exec.synthesis.b8).__module__ == module.__name__
    misc.copy_params_and_buffers(G, G_exec, require_all=True)
    z = torch.randn(2, 32)
    torch.testing.assert_close(G_exec(z, None, noise_mode='const'), G(z, None, noise_mode='const'), rtol=0, atol=0)
    D = testing.tiny_discriminator()
    D_exec = module.Discriminator(**D.init_kwargs).eval()
    misc.copy_params_and_buffers(D, D_exec, require_all=True)
    img = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(D_exec(img, None), D(img, None), rtol=0, atol=0)

#----------------------------------------------------------------------------
