"""`stylegan2-generate`: images from a network pickle (the toolkit's generate.py, same flags).

`--network` takes every format the safe loader reads: stylegan2-ada-pytorch / stylegan3 pickles,
TensorFlow StyleGAN2(-ADA) pickles and rosinality `.pt` checkpoints.
"""

import os
import re

import click
import numpy as np
import torch

from .. import dnnlib
from ..dnnlib import UserError
from ..images import save_image, to_uint8
from ..legacy import load_generator

#----------------------------------------------------------------------------

def parse_range(s):
    """'0-3,7' -> [0, 1, 2, 3, 7]."""
    if isinstance(s, list):
        return s
    values = []
    for part in s.split(','):
        m = re.fullmatch(r'^(\d+)-(\d+)$', part.strip())
        if m:
            values += range(int(m.group(1)), int(m.group(2)) + 1)
        elif re.fullmatch(r'\d+', part.strip()):
            values.append(int(part))
        else:
            raise click.BadParameter(f'{part!r} is not a number or a range like 0-3')
    return values

#----------------------------------------------------------------------------

def setup_generate_config(network_pkl, seeds, truncation_psi, class_idx, noise_mode, projected_w, outdir):
    """Validate the options; returns an EasyDict. Pure: raises UserError."""
    if seeds is None and projected_w is None:
        raise UserError('--seeds: give --seeds or --projected-w')
    if projected_w is not None and not os.path.isfile(projected_w):
        raise UserError(f'--projected-w: no such file: {projected_w}')
    if noise_mode not in ('const', 'random', 'none'):
        raise UserError(f'--noise-mode: unknown mode {noise_mode!r}')
    return dnnlib.EasyDict(network_pkl=network_pkl, seeds=seeds, truncation_psi=truncation_psi, class_idx=class_idx,
        noise_mode=noise_mode, projected_w=projected_w, outdir=outdir)

def generate_images(c, device=None):
    """Run the configuration from setup_generate_config(); returns the paths written."""
    device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    G = load_generator(c.network_pkl, device)
    os.makedirs(c.outdir, exist_ok=True)
    written = []
    if c.projected_w is not None:
        ws = np.load(c.projected_w)['w']
        ws = torch.tensor(ws, device=device)
        if ws.ndim != 3 or ws.shape[1:] != (G.num_ws, G.w_dim):
            raise UserError(f'--projected-w: expected w of shape [N, {G.num_ws}, {G.w_dim}], got {list(ws.shape)}')
        for idx, w in enumerate(ws):
            img = G.synthesis(w.unsqueeze(0), noise_mode=c.noise_mode)
            path = os.path.join(c.outdir, f'proj{idx:02d}.png')
            save_image(path, to_uint8(img)[0])
            written.append(path)
        return written

    label = torch.zeros([1, G.c_dim], device=device)
    if G.c_dim != 0:
        if c.class_idx is None:
            raise UserError('--class: must be given for a conditional network')
        label[:, c.class_idx] = 1
    elif c.class_idx is not None:
        print('warning: --class is ignored for an unconditional network')
    with click.progressbar(c.seeds, label='Generating') as bar:
        for seed in bar:
            z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).to(device=device, dtype=torch.float32)
            img = G(z, label, truncation_psi=c.truncation_psi, noise_mode=c.noise_mode)
            path = os.path.join(c.outdir, f'seed{seed:04d}.png')
            save_image(path, to_uint8(img)[0])
            written.append(path)
    return written

#----------------------------------------------------------------------------

@click.command()
@click.option('--network', 'network_pkl', help='Network pickle or checkpoint (path or URL)', required=True, metavar='PATH')
@click.option('--seeds',          help='List of random seeds, e.g. 0-3,7', type=parse_range, metavar='LIST')
@click.option('--trunc',          'truncation_psi', help='Truncation psi', type=float, default=1, show_default=True, metavar='FLOAT')
@click.option('--class',          'class_idx', help='Class label (unconditional if not specified)', type=int, metavar='INT')
@click.option('--noise-mode',     help='Noise mode', type=click.Choice(['const', 'random', 'none']), default='const', show_default=True)
@click.option('--projected-w',    help='Projection result file (.npz with w [N, num_ws, w_dim])', type=str, metavar='FILE')
@click.option('--outdir',         help='Where to save the output images', type=str, required=True, metavar='DIR')
@click.option('--device',         help='Torch device (default: cuda if available, else cpu)', metavar='DEV')
@torch.no_grad()
def main(network_pkl, seeds, truncation_psi, class_idx, noise_mode, projected_w, outdir, device):
    """Generate images from a trained network.

    \b
    Examples:

    \b
    # Curated FFHQ faces with truncation, from a local pickle:
    stylegan2-generate --outdir=out --trunc=0.7 --seeds=600-605 --network=ffhq.pkl

    \b
    # A tiny CPU-trained model:
    stylegan2-generate --outdir=out --seeds=0-15 --network=runs/00000-fashion/network-snapshot-000020.pkl
    """
    try:
        c = setup_generate_config(network_pkl, seeds, truncation_psi, class_idx, noise_mode, projected_w, outdir)
        generate_images(c, device=device)
    except UserError as err:
        raise click.ClickException(str(err))

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()

#----------------------------------------------------------------------------
