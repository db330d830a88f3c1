"""rosinality/stylegan2-pytorch and e4e generator checkpoints -> our Generator.

The reference is an independent pure-torch forward of the rosinality layout written here from the
documented facts of that layout: PixelNorm + EqualLinear mapping (lr_mul 0.01, fused leaky ReLU
with gain sqrt(2)); modulated convolution with the 1/sqrt(fan_in) scale applied at run time,
demodulation with eps 1e-8, per-sample grouped convolution; upsampling convolution = stride-2
`conv_transpose2d` followed by a blur with the stored [1,3,3,1] kernel (which carries the x4
upsampling gain) padded (1, 1); noise injection (weight * noise) before the fused bias + leaky
ReLU; ToRGB without demodulation, plus the previous RGB upsampled by upfirdn (up 2, pad (2, 1)).
The converted network must give the same image for the same W+ and constant noise; converting
with a deliberately wrong kernel flip must give a large error.
"""

import io
import json
import math
import re

import pytest
import torch
import torch.nn.functional as F

from stylegan2_ada_pytorch import _convert_rosinality, legacy
from stylegan2_ada_pytorch._safe_unpickle import NetworkPickleError

from ..conftest import DATA

#----------------------------------------------------------------------------
# The independent rosinality-layout forward.

def ros_linear(x, weight, bias, lr_mul=1.0, act=False):
    out = F.linear(x, weight * (lr_mul / math.sqrt(weight.shape[1])))
    out = out + bias * lr_mul
    return F.leaky_relu(out, 0.2) * math.sqrt(2) if act else out

def ros_mapping(z, sd):
    x = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
    n_mlp = len([k for k in sd if re.fullmatch(r'style\.\d+\.weight', k)])
    for i in range(1, n_mlp + 1):
        x = ros_linear(x, sd[f'style.{i}.weight'], sd[f'style.{i}.bias'], lr_mul=0.01, act=True)
    return x

def upfirdn(x, kernel, up, pad0, pad1):
    """Zero-insertion upsampling, padding, then a true convolution with `kernel` (per channel)."""
    N, C, H, W = x.shape
    if up > 1:
        y = x.new_zeros([N, C, H * up, W * up])
        y[:, :, ::up, ::up] = x
        x = y
    x = F.pad(x, [pad0, pad1, pad0, pad1])
    k = torch.flip(kernel, [0, 1])[None, None].repeat(C, 1, 1, 1)
    return F.conv2d(x, k, groups=C)

def ros_modconv(x, w, sd, prefix, demodulate=True, upsample=False):
    weight = sd[f'{prefix}conv.weight']  # [1, O, I, k, k]
    _, O, I, k, _ = weight.shape
    N, _, H, W = x.shape
    style = ros_linear(w, sd[f'{prefix}conv.modulation.weight'], sd[f'{prefix}conv.modulation.bias'])
    wt = weight / math.sqrt(I * k * k) * style.view(N, 1, I, 1, 1)
    if demodulate:
        wt = wt * torch.rsqrt(wt.pow(2).sum([2, 3, 4]) + 1e-8).view(N, O, 1, 1, 1)
    if upsample:
        wt = wt.transpose(1, 2).reshape(N * I, O, k, k)
        out = F.conv_transpose2d(x.reshape(1, N * I, H, W), wt, stride=2, padding=0, groups=N)
        out = out.view(N, O, out.shape[2], out.shape[3])
        return upfirdn(out, sd[f'{prefix}conv.blur.kernel'], up=1, pad0=1, pad1=1)
    out = F.conv2d(x.reshape(1, N * I, H, W), wt.reshape(N * O, I, k, k), padding=k // 2, groups=N)
    return out.view(N, O, H, W)

def ros_styled_conv(x, w, sd, prefix, noise, upsample=False):
    out = ros_modconv(x, w, sd, prefix, upsample=upsample)
    out = out + sd[f'{prefix}noise.weight'] * noise
    return F.leaky_relu(out + sd[f'{prefix}activate.bias'].view(1, -1, 1, 1), 0.2) * math.sqrt(2)

def ros_to_rgb(x, w, sd, prefix, skip):
    out = ros_modconv(x, w, sd, prefix, demodulate=False) + sd[f'{prefix}bias']
    if skip is not None:
        out = out + upfirdn(skip, sd[f'{prefix}upsample.kernel'], up=2, pad0=2, pad1=1)
    return out

def ros_synthesis(ws, sd):
    num_up = len([k for k in sd if re.fullmatch(r'to_rgbs\.\d+\.conv\.weight', k)])
    x = sd['input.input'].repeat(ws.shape[0], 1, 1, 1)
    x = ros_styled_conv(x, ws[:, 0], sd, 'conv1.', sd['noises.noise_0'])
    skip = ros_to_rgb(x, ws[:, 1], sd, 'to_rgb1.', None)
    i = 1
    for k in range(num_up):
        x = ros_styled_conv(x, ws[:, i], sd, f'convs.{2 * k}.', sd[f'noises.noise_{2 * k + 1}'], upsample=True)
        x = ros_styled_conv(x, ws[:, i + 1], sd, f'convs.{2 * k + 1}.', sd[f'noises.noise_{2 * k + 2}'])
        skip = ros_to_rgb(x, ws[:, i + 2], sd, f'to_rgbs.{k}.', skip)
        i += 2
    return skip

#----------------------------------------------------------------------------
# A small random checkpoint in the rosinality layout.

def blur_kernel(gain):
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = torch.outer(f, f)
    return k / k.sum() * gain

def random_rosinality_sd(style_dim=32, n_mlp=3, widths=(32, 32, 16, 8), seed=0):
    gen = torch.Generator().manual_seed(seed)
    rnd = lambda *shape, s=1.0: torch.randn(shape, generator=gen) * s
    sd = {}
    for i in range(1, n_mlp + 1):
        sd[f'style.{i}.weight'], sd[f'style.{i}.bias'] = rnd(style_dim, style_dim, s=100.0), rnd(style_dim, s=10.0)
    sd['input.input'] = rnd(1, widths[0], 4, 4)
    def styled(prefix, cin, cout, up):
        sd[f'{prefix}conv.weight'] = rnd(1, cout, cin, 3, 3)
        if up:
            sd[f'{prefix}conv.blur.kernel'] = blur_kernel(4)
        sd[f'{prefix}conv.modulation.weight'] = rnd(cin, style_dim)
        sd[f'{prefix}conv.modulation.bias'] = 1 + rnd(cin, s=0.2)
        sd[f'{prefix}noise.weight'] = rnd(1, s=0.5)
        sd[f'{prefix}activate.bias'] = rnd(cout, s=0.2)
    def to_rgb(prefix, cin, up):
        sd[f'{prefix}bias'] = rnd(1, 3, 1, 1, s=0.2)
        if up:
            sd[f'{prefix}upsample.kernel'] = blur_kernel(4)
        sd[f'{prefix}conv.weight'] = rnd(1, 3, cin, 1, 1)
        sd[f'{prefix}conv.modulation.weight'] = rnd(cin, style_dim)
        sd[f'{prefix}conv.modulation.bias'] = 1 + rnd(cin, s=0.2)
    styled('conv1.', widths[0], widths[0], False)
    to_rgb('to_rgb1.', widths[0], False)
    for k in range(len(widths) - 1):
        styled(f'convs.{2 * k}.', widths[k], widths[k + 1], True)
        styled(f'convs.{2 * k + 1}.', widths[k + 1], widths[k + 1], False)
        to_rgb(f'to_rgbs.{k}.', widths[k + 1], True)
    for j in range(2 * len(widths) - 1):
        r = 4 * 2 ** ((j + 1) // 2)
        sd[f'noises.noise_{j}'] = rnd(1, 1, r, r)
    return sd

def checkpoint_bytes(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()

def ws_for(sd, n=2, seed=5):
    num_ws = len([k for k in sd if k.startswith('noises.')]) + 1  # one w per conv, plus the last ToRGB
    return torch.randn([n, num_ws, sd['style.1.weight'].shape[0]], generator=torch.Generator().manual_seed(seed))

#----------------------------------------------------------------------------

def test_converted_generator_matches_reference_forward():
    sd = random_rosinality_sd()
    latent_avg = torch.randn(32, generator=torch.Generator().manual_seed(9))
    out = legacy.load_network_pkl(io.BytesIO(checkpoint_bytes(dict(g_ema=sd, latent_avg=latent_avg))))
    G = out['G_ema']
    assert (G.img_resolution, G.num_ws, G.z_dim, G.mapping.num_layers) == (32, 8, 32, 3)
    assert G.synthesis.stage_channels == dict(b4=32, b8=32, b16=16, b32=8)
    ws = ws_for(sd)
    ref = ros_synthesis(ws, sd)
    img = G.synthesis(ws, noise_mode='const')
    diff = (img - ref).abs().max().item()
    print(f'rosinality synthesis max abs diff {diff:.3g} (image range +-{ref.abs().max().item():.3g})')
    assert torch.allclose(img, ref, atol=1e-4, rtol=1e-4)
    z = torch.randn([3, 32], generator=torch.Generator().manual_seed(2))
    w_diff = (G.mapping(z, None)[:, 0] - ros_mapping(z, sd)).abs().max().item()
    print(f'rosinality mapping max abs diff {w_diff:.3g}')
    assert torch.allclose(G.mapping(z, None)[:, 0], ros_mapping(z, sd), atol=1e-4, rtol=1e-4)
    assert torch.equal(G.mapping.w_avg, latent_avg) and out['D'] is None

def test_wrong_kernel_flip_gives_large_error(monkeypatch):
    sd = random_rosinality_sd()
    monkeypatch.setattr(_convert_rosinality, 'FLIP_UP_KERNELS', not _convert_rosinality.FLIP_UP_KERNELS)
    G = legacy.load_rosinality_generator(io.BytesIO(checkpoint_bytes(dict(g_ema=sd, latent_avg=torch.zeros(32)))))
    ws = ws_for(sd)
    diff = (G.synthesis(ws, noise_mode='const') - ros_synthesis(ws, sd)).abs().max().item()
    print(f'with the opposite flip: max abs diff {diff:.3g}')
    assert diff > 0.1

def test_reference_forward_is_sensitive_to_kernel_orientation():
    # Sanity check of the reference itself: flipping the stored up-conv kernels changes its image.
    sd = random_rosinality_sd()
    flipped = {k: (v.flip([3, 4]) if re.fullmatch(r'convs\.\d*[02468]\.conv\.weight', k) else v) for k, v in sd.items()}
    ws = ws_for(sd)
    assert (ros_synthesis(ws, sd) - ros_synthesis(ws, flipped)).abs().max() > 0.1

def test_e4e_checkpoint_decoder():
    sd = random_rosinality_sd(seed=3)
    latent_avg = torch.randn(32).repeat(8, 1)
    state = {f'decoder.{k}': v for k, v in sd.items()}
    state['encoder.input_layer.0.weight'] = torch.zeros(4, 3, 3, 3)
    ckpt = dict(state_dict=state, latent_avg=latent_avg, opts=dict(stylegan_size=32, encoder_type='Encoder4Editing'))
    G = legacy.load_rosinality_generator(io.BytesIO(checkpoint_bytes(ckpt)))
    ws = ws_for(sd)
    assert torch.allclose(G.synthesis(ws, noise_mode='const'), ros_synthesis(ws, sd), atol=1e-4, rtol=1e-4)
    assert torch.equal(G.mapping.w_avg, latent_avg[0])

def test_wrong_blur_kernel_scaling_refused():
    sd = random_rosinality_sd()
    sd['convs.0.conv.blur.kernel'] = blur_kernel(1)
    with pytest.raises(NetworkPickleError, match=r'convs.0.conv.blur.kernel is not the 4 x normalised'):
        legacy.load_network_pkl(io.BytesIO(checkpoint_bytes(dict(g_ema=sd))))

def test_checkpoint_with_code_refused(tmp_path):
    marker = tmp_path / 'pwned'
    class Evil:
        def __reduce__(self):
            return (exec, (f'open({str(marker)!r}, "w").close()',))
    with pytest.raises(NetworkPickleError, match='cannot read torch checkpoint weights-only'):
        legacy.load_network_pkl(io.BytesIO(checkpoint_bytes(dict(g_ema=random_rosinality_sd(), x=Evil()))))
    assert not marker.exists()

def test_1024_key_layout_matches_spec_files():
    # The published rosinality 1024 generator (key list) maps onto exactly NVIDIA's 1024 G keys.
    shapes = {}
    for line in (DATA / 'spec' / 'rosinality_g1024_keys.txt').read_text().splitlines():
        if line and not line.startswith('#'):
            key, shape = line.split('\t')
            shapes[key] = torch.empty(json.loads(shape), device='meta')  # shape lists like [1, 512, 4, 4]
    kwargs = _convert_rosinality.generator_kwargs(shapes, 'rosinality_g1024_keys.txt')
    assert (kwargs.img_resolution, kwargs.z_dim, kwargs.mapping_kwargs.num_layers) == (1024, 512, 8)
    assert (kwargs.synthesis_kwargs.channel_base, kwargs.synthesis_kwargs.channel_max) == (32768, 512)
    mapping = _convert_rosinality.key_map(kwargs)
    assert {src for src, _ in mapping.values()} == {k for k in shapes if not k.endswith('.kernel')}
    nv = set()
    for line in (DATA / 'spec' / 'nv_keys_1024.txt').read_text().splitlines():
        if line.startswith('G.') and '\t' in line:
            nv.add(line.split('\t')[0][2:])
    assert set(mapping) == {k for k in nv if not k.endswith('resample_filter') and k != 'mapping.w_avg'}
    for _dst, (src, transform) in mapping.items():
        value = transform(shapes[src]) if transform else shapes[src]
        assert value.numel() == shapes[src].numel()

#----------------------------------------------------------------------------
# The reverse (our Generator -> rosinality), used by gradstyle-train-encoder --export-e4e.

def test_rosinality_state_round_trip_and_1024_layout():
    from stylegan2_ada_pytorch import testing
    from stylegan2_ada_pytorch.networks import Generator
    sd = random_rosinality_sd(seed=4)
    G = _convert_rosinality.convert_rosinality_state(sd, torch.randn(32), Generator)
    back = _convert_rosinality.rosinality_state(G)
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k].float()) for k in sd)   # the published tensors, exactly
    with pytest.raises(legacy.NetworkPickleError, match='z_dim == w_dim'):
        _convert_rosinality.rosinality_state(testing.tiny_generator(z_dim=16))
    shapes = {}
    for line in (DATA / 'spec' / 'rosinality_g1024_keys.txt').read_text().splitlines():
        if line and not line.startswith('#'):
            key, shape = line.split('\t')
            shapes[key] = json.loads(shape)
    with torch.random.fork_rng(devices=[]):
        G1024 = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3, mapping_kwargs=dict(num_layers=8),
            synthesis_kwargs=dict(channel_base=32768, channel_max=512)).eval()
    assert {k: list(v.shape) for k, v in _convert_rosinality.rosinality_state(G1024).items()} == shapes

#----------------------------------------------------------------------------
