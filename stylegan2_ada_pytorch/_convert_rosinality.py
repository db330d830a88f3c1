"""Conversion of rosinality/stylegan2-pytorch generator checkpoints (and e4e's `decoder.*`).

Input: a `torch.save`d dict read with `torch.load(weights_only=True, map_location='cpu')`, holding
either `g_ema` (rosinality's own checkpoints, optionally `latent_avg`) or an e4e-style `state_dict`
with `decoder.<key>` entries and `latent_avg`. The generator's size, width per resolution,
mapping depth and style size are read from the tensor shapes (inversion-formats.md section 4).

Numerics (settled by tests/toolkit/test_convert_rosinality.py against an independent forward of
the rosinality layout): rosinality's modulated convolution keeps the 1/sqrt(fan_in) scale outside
the stored weight and demodulates, like ours; its upsampling convolution (a stride-2 transposed
convolution followed by the [1,3,3,1] blur) applies the kernel in the same orientation as our
`conv0`, so kernels are copied without a flip; its blur/upsample kernels are the normalised
[1,3,3,1] outer product times up**2 = 4, whereas our `resample_filter` buffers hold the
normalised filter and apply the gain at use, so those buffers are checked, not copied.
"""

import argparse
import re

import numpy as np
import torch

from . import dnnlib
from ._safe_unpickle import NetworkPickleError

FLIP_UP_KERNELS = False  # see the module docstring; the test also checks that True is wrong

#----------------------------------------------------------------------------

def read_checkpoint(file, name):
    """torch.load with weights_only (argparse.Namespace allowed for rosinality's `args`)."""
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(file, weights_only=True, map_location='cpu')
    except Exception as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NetworkPickleError(f'{name}: cannot read torch checkpoint weights-only ({type(err).__name__}: {detail})') from None

def generator_state(ckpt, name):
    """(rosinality generator state dict, latent_avg or None) from a rosinality or e4e checkpoint."""
    if not isinstance(ckpt, dict):
        raise NetworkPickleError(f'{name}: checkpoint is a {type(ckpt).__name__}, expected a dict')
    if isinstance(ckpt.get('g_ema'), dict):
        return dict(ckpt['g_ema']), ckpt.get('latent_avg')
    if isinstance(ckpt.get('state_dict'), dict):
        sd = {k[len('decoder.'):]: v for k, v in ckpt['state_dict'].items() if k.startswith('decoder.')}
        if not sd:
            raise NetworkPickleError(f'{name}: state_dict has no decoder.* entries')
        return sd, ckpt.get('latent_avg')
    if 'input.input' in ckpt and 'style.1.weight' in ckpt:
        return dict(ckpt), None
    raise NetworkPickleError(f'{name}: no rosinality generator found (expected "g_ema", or "state_dict" with decoder.* keys)')

#----------------------------------------------------------------------------

def _channel_layout(widths, name):
    """{res: ch} -> (channel_base, channel_max) with min(channel_base // res, channel_max) == ch."""
    channel_max = max(widths.values())
    below = [res for res in sorted(widths) if widths[res] < channel_max]
    channel_base = widths[below[0]] * below[0] if below else channel_max * max(widths)
    if any(min(channel_base // res, channel_max) != ch for res, ch in widths.items()):
        raise NetworkPickleError(f'{name}: channel widths {widths} do not follow min(channel_base // res, channel_max)')
    return channel_base, channel_max

def generator_kwargs(sd, name):
    """Our Generator kwargs inferred from the shapes of a rosinality state dict."""
    try:
        n_mlp = len([k for k in sd if re.fullmatch(r'style\.\d+\.weight', k)])
        style_dim = sd['style.1.weight'].shape[0]
        num_up = len([k for k in sd if re.fullmatch(r'to_rgbs\.\d+\.conv\.weight', k)])
        widths = {4: sd['conv1.conv.weight'].shape[1]}
        for k in range(num_up):
            widths[8 * 2 ** k] = sd[f'convs.{2 * k}.conv.weight'].shape[1]
        img_channels = sd['to_rgb1.conv.weight'].shape[1]
    except KeyError as err:
        raise NetworkPickleError(f'{name}: rosinality generator lacks {err.args[0]}') from None
    channel_base, channel_max = _channel_layout(widths, name)
    return dnnlib.EasyDict(z_dim=style_dim, c_dim=0, w_dim=style_dim, img_resolution=4 * 2 ** num_up,
        img_channels=img_channels, mapping_kwargs=dnnlib.EasyDict(num_layers=n_mlp),
        synthesis_kwargs=dnnlib.EasyDict(channel_base=channel_base, channel_max=channel_max))

#----------------------------------------------------------------------------

def _layer_map(src, dst, up):
    flip = (lambda w: w.flip([2, 3])) if (up and FLIP_UP_KERNELS) else (lambda w: w)
    return {
        f'{dst}.weight':            (f'{src}.conv.weight', lambda w: flip(w[0])),
        f'{dst}.affine.weight':     (f'{src}.conv.modulation.weight', None),
        f'{dst}.affine.bias':       (f'{src}.conv.modulation.bias', None),
        f'{dst}.noise_strength':    (f'{src}.noise.weight', lambda w: w.reshape([])),
        f'{dst}.bias':              (f'{src}.activate.bias', None),
    }

def _torgb_map(src, dst):
    return {
        f'{dst}.weight':            (f'{src}.conv.weight', lambda w: w[0]),
        f'{dst}.bias':              (f'{src}.bias', lambda w: w.reshape(-1)),
        f'{dst}.affine.weight':     (f'{src}.conv.modulation.weight', None),
        f'{dst}.affine.bias':       (f'{src}.conv.modulation.bias', None),
    }

def key_map(kwargs):
    """{our name: (rosinality key, transform or None)} for every tensor we load (not filters)."""
    out = {f'mapping.fc{i}.{p}': (f'style.{i + 1}.{p}', None)
        for i in range(kwargs.mapping_kwargs.num_layers) for p in ('weight', 'bias')}
    out['synthesis.b4.const'] = ('input.input', lambda w: w[0])
    out.update(_layer_map('conv1', 'synthesis.b4.conv1', up=False))
    out.update(_torgb_map('to_rgb1', 'synthesis.b4.torgb'))
    out['synthesis.b4.conv1.noise_const'] = ('noises.noise_0', lambda w: w[0, 0])
    num_up = int(np.log2(kwargs.img_resolution)) - 2
    for k in range(num_up):
        res = 8 * 2 ** k
        out.update(_layer_map(f'convs.{2 * k}', f'synthesis.b{res}.conv0', up=True))
        out.update(_layer_map(f'convs.{2 * k + 1}', f'synthesis.b{res}.conv1', up=False))
        out.update(_torgb_map(f'to_rgbs.{k}', f'synthesis.b{res}.torgb'))
        out[f'synthesis.b{res}.conv0.noise_const'] = (f'noises.noise_{2 * k + 1}', lambda w: w[0, 0])
        out[f'synthesis.b{res}.conv1.noise_const'] = (f'noises.noise_{2 * k + 2}', lambda w: w[0, 0])
    return out

#----------------------------------------------------------------------------

def _check_blur_kernels(sd, name):
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    expected = torch.outer(f, f) / f.sum() ** 2 * 4  # normalised filter times up**2
    for key, value in sd.items():
        if key.endswith('blur.kernel') or key.endswith('upsample.kernel'):
            if value.shape != expected.shape or not torch.allclose(value.float(), expected, atol=1e-6):
                raise NetworkPickleError(f'{name}: {key} is not the 4 x normalised [1,3,3,1] kernel; other blur kernels are not supported')

def _set_w_avg(G, latent_avg, name):
    if latent_avg is None:
        with torch.no_grad():  # estimate like e4e does when the file has none: mean of many mapped z
            z = torch.randn([10000, G.z_dim], generator=torch.Generator().manual_seed(0))
            G.mapping.w_avg.copy_(G.mapping(z, None)[:, 0].mean(0))
        return
    latent_avg = latent_avg.float().reshape(-1, G.w_dim)
    if latent_avg.shape[0] not in (1, G.num_ws) or not torch.allclose(latent_avg, latent_avg[:1].expand_as(latent_avg), atol=1e-5):
        raise NetworkPickleError(f'{name}: latent_avg must be [w_dim] or [num_ws, w_dim] with equal rows')
    G.mapping.w_avg.copy_(latent_avg[0])

def convert_rosinality_state(sd, latent_avg, generator_class, name='<checkpoint>'):
    """Build `generator_class` from a rosinality generator state dict and copy every tensor."""
    kwargs = generator_kwargs(sd, name)
    _check_blur_kernels(sd, name)
    G = generator_class(**kwargs).eval().requires_grad_(False)
    mapping = key_map(kwargs)
    ours = dict(list(G.named_parameters()) + list(G.named_buffers()))
    expected_ours = {n for n in ours if not n.endswith('resample_filter') and n != 'mapping.w_avg'}
    if set(mapping) != expected_ours:
        raise NetworkPickleError(f'{name}: generator layout mismatch: {sorted(set(mapping) ^ expected_ours)[:6]}')
    used = set()
    with torch.no_grad():
        for dst, (src, transform) in mapping.items():
            if src not in sd:
                raise NetworkPickleError(f'{name}: rosinality key {src} (for {dst}) is missing')
            value = sd[src].float()
            value = transform(value) if transform else value
            if value.shape != ours[dst].shape:
                raise NetworkPickleError(f'{name}: {src} gives shape {list(value.shape)} for {dst} {list(ours[dst].shape)}')
            ours[dst].copy_(value)
            used.add(src)
        _set_w_avg(G, latent_avg, name)
    leftover = [k for k in sd if k not in used and not k.endswith('.kernel')]
    if leftover:
        raise NetworkPickleError(f'{name}: unexpected rosinality keys {leftover[:6]}')
    return G

#----------------------------------------------------------------------------
# The reverse: our Generator -> a rosinality generator state dict (e4e's `decoder.*`).

def _rosinality_shape(key, ours):
    # rosinality keeps singleton leading dims that our layout drops (see key_map's transforms).
    if key.startswith('noises.'):
        return [1, 1, *ours.shape]
    if key.endswith('noise.weight'):
        return [1]
    if re.fullmatch(r'to_rgb(1|s\.\d+)\.bias', key):
        return [1, ours.numel(), 1, 1]
    if key.endswith('conv.weight') or key == 'input.input':
        return [1, *ours.shape]
    return list(ours.shape)

def rosinality_state(G, name='--network'):
    """The rosinality state dict (blur kernels included) of our Generator `G`: convert_rosinality_state's inverse.

    Raises NetworkPickleError when G has no rosinality form (conditional, z_dim != w_dim, another
    architecture or layout). Check the result with `convert_rosinality_state` (same images) before
    relying on it: options rosinality lacks (e.g. conv_clamp, mapping lr_multiplier) are not detected here.
    """
    if G.c_dim != 0 or G.z_dim != G.w_dim:
        raise NetworkPickleError(f'{name}: rosinality generators are unconditional with z_dim == w_dim')
    kwargs = dnnlib.EasyDict(img_resolution=G.img_resolution, mapping_kwargs=dnnlib.EasyDict(num_layers=G.mapping.num_layers))
    ours = dict(list(G.named_parameters()) + list(G.named_buffers()))
    sd = {}
    with torch.no_grad():
        for dst, (src, transform) in key_map(kwargs).items():
            if dst not in ours:
                raise NetworkPickleError(f'{name}: the generator has no {dst}; it is not in the rosinality layout')
            value = ours[dst].detach().float().cpu().reshape(_rosinality_shape(src, ours[dst]))
            value = value.flip([3, 4]) if FLIP_UP_KERNELS and src.startswith('convs.') and src.endswith('conv.weight') else value
            back = transform(value) if transform else value
            if back.shape != ours[dst].shape or not torch.equal(back, ours[dst].detach().float().cpu()):
                raise NetworkPickleError(f'{name}: {dst} has no rosinality form')
            sd[src] = value.clone()
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = torch.outer(f, f) / f.sum() ** 2 * 4
    for k in range(int(np.log2(G.img_resolution)) - 2):
        sd[f'convs.{2 * k}.conv.blur.kernel'] = kernel.clone()
        sd[f'to_rgbs.{k}.upsample.kernel'] = kernel.clone()
    return sd

#----------------------------------------------------------------------------
