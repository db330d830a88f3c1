"""Image grids written to the run dir: reals.png, fakes_init.png and fakes<kimg>.png."""

import os

import numpy as np
import torch

from .. import dnnlib
from ..images import save_image

#----------------------------------------------------------------------------

def grid_shape(resolution, max_images=None):
    """The toolkit's grid size (gw, gh) for square images of `resolution`, optionally capped."""
    gw = int(np.clip(7680 // resolution, 7, 32))
    gh = int(np.clip(4320 // resolution, 4, 32))
    if max_images is not None:
        while gw * gh > max_images and (gw > 1 or gh > 1):
            if gw >= gh:
                gw -= 1
            else:
                gh -= 1
    return gw, gh

def choose_grid_items(training_set, gw, gh, random_seed=0):
    """Indices of dataset items for the grid; conditional sets get one label per row."""
    rnd = np.random.RandomState(random_seed)
    if not training_set.has_labels:
        all_indices = list(range(len(training_set)))
        rnd.shuffle(all_indices)
        return [all_indices[i % len(all_indices)] for i in range(gw * gh)]
    by_label = dict()
    for idx in range(len(training_set)):
        key = tuple(training_set.get_details(idx).raw_label.flat[::-1])
        by_label.setdefault(key, []).append(idx)
    keys = sorted(by_label.keys())
    for key in keys:
        rnd.shuffle(by_label[key])
    indices = []
    for y in range(gh):
        row = by_label[keys[y % len(keys)]]
        indices += [row[x % len(row)] for x in range(gw)]
    return indices

def save_image_grid(img, fname, drange, grid_size):
    """Write a [N, C, H, W] float array laid out as a gw x gh grid, scaled from `drange` to uint8."""
    lo, hi = drange
    img = np.asarray(img, dtype=np.float32)
    img = (img - lo) * (255 / (hi - lo))
    img = np.rint(img).clip(0, 255).astype(np.uint8)
    gw, gh = grid_size
    _N, C, H, W = img.shape
    img = img.reshape([gh, gw, C, H, W]).transpose(0, 3, 1, 4, 2).reshape([gh * H, gw * W, C])
    assert C in [1, 3]
    save_image(fname, img)

#----------------------------------------------------------------------------

def setup(run_dir, training_set, G_ema, device, rank, random_seed, batch=8, max_images=None, write=True):
    """Pick the grid's reals, latents and labels; write reals.png and fakes_init.png (rank 0)."""
    gw, gh = grid_shape(training_set.resolution, max_images)
    indices = choose_grid_items(training_set, gw, gh, random_seed)
    images, labels = zip(*[training_set[i] for i in indices])
    gen = torch.Generator().manual_seed(random_seed)
    grid = dnnlib.EasyDict(size=(gw, gh), batch=batch,
        z=torch.randn([len(indices), G_ema.z_dim], generator=gen).to(device),
        c=torch.from_numpy(np.stack(labels)).to(device))
    if rank == 0 and write:
        save_image_grid(np.stack(images), os.path.join(run_dir, 'reals.png'), drange=[0, 255], grid_size=grid.size)
        save(run_dir, grid, G_ema, None, rank)
    return grid

@torch.no_grad()
def save(run_dir, grid, G_ema, cur_nimg, rank):
    """fakes<kimg>.png from G_ema (noise_mode='const'); fakes_init.png when cur_nimg is None."""
    if rank != 0:
        return
    images = [G_ema(z=z, c=c, noise_mode='const').cpu() for z, c in zip(grid.z.split(grid.batch), grid.c.split(grid.batch))]
    name = 'fakes_init.png' if cur_nimg is None else f'fakes{cur_nimg // 1000:06d}.png'
    save_image_grid(torch.cat(images).numpy(), os.path.join(run_dir, name), drange=[-1, 1], grid_size=grid.size)

#----------------------------------------------------------------------------
