"""The image grid of gradstyle-train-encoder runs: source | reconstruction G.synthesis(E(x)), one row per image."""

import os

import torch

from stylegan2_ada_pytorch.training.snapshot_images import save_image_grid
from gradstyle_plugin.snapshot_grid import first_reals

#----------------------------------------------------------------------------

@torch.no_grad()
def save_reconstruction_grid(run_dir, nets, training_set, cur_nimg, device, rank, num_images=8):
    """Write reconstructions_init.png / reconstructions<kimg>.png (rank 0 only; const noise, encoder in eval mode)."""
    if rank != 0:
        return
    x = first_reals(training_set, num_images, device)
    encoder = nets.encoder
    was_training = encoder.training
    ws, _feats = encoder.eval()(x)
    encoder.train(was_training)
    rec = nets.G_ema.synthesis(ws, noise_mode='const')
    cells = torch.stack([x, rec], dim=1).flatten(0, 1)                                 # rows of 2 cells
    name = 'reconstructions_init.png' if cur_nimg is None else f'reconstructions{cur_nimg // 1000:06d}.png'
    save_image_grid(cells.clamp(-1, 1).cpu().numpy(), os.path.join(run_dir, name), drange=[-1, 1], grid_size=(2, len(x)))

#----------------------------------------------------------------------------
