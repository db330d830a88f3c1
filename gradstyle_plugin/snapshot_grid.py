"""The image grid of gradstyle-train runs: source | reconstruction | alpha = 0 edit, one row per image."""

import os

import numpy as np
import torch

from stylegan2_ada_pytorch.training.snapshot_images import save_image_grid
from gradstyle_plugin import streams

#----------------------------------------------------------------------------

def first_reals(training_set, num_images, device):
    """The first min(num_images, len) training images as float32 [N, C, R, R] in [-1, 1] on `device`."""
    count = min(num_images, len(training_set))
    reals = np.stack([training_set[i][0] for i in range(count)])                      # [N, C, R, R] uint8
    return torch.from_numpy(reals).to(device).to(torch.float32) / 127.5 - 1

@torch.no_grad()
def save_stream_grid(run_dir, nets, training_set, cur_nimg, device, rank, num_images=8):
    """Write streams_init.png / streams<kimg>.png from G_ema and the encoder (rank 0 only)."""
    if rank != 0:
        return
    x = first_reals(training_set, num_images, device)
    out = streams.run_streams(nets.G_ema, nets.encoder, x)
    cells = torch.stack([x, out.img_rec, out.img_edit], dim=1).flatten(0, 1)           # rows of 3 cells
    name = 'streams_init.png' if cur_nimg is None else f'streams{cur_nimg // 1000:06d}.png'
    save_image_grid(cells.clamp(-1, 1).cpu().numpy(), os.path.join(run_dir, name), drange=[-1, 1], grid_size=(3, len(x)))

#----------------------------------------------------------------------------
