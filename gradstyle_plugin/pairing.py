"""Does this encoder belong to this generator? The check of every command that takes `--encoder`.

An e4e encoder (Tov et al. 2021) gives W+ = latent_avg + deltas for ONE generator: its latent_avg
is that generator's mean w, and its deltas were learnt through that generator's synthesis. Pairing
it with another generator (even of the same domain) runs but reconstructs poorly. `check_pairing`:

1. Shapes, always (no --force): W+ rows and width, image channels, input resolution. A 3-channel
   encoder with a 1-channel generator is a one-line error, not an assertion deep in the encoder.
2. Unless `force`: latent_avg against the generator's w_avg (relative L2 distance at most
   `LATENT_AVG_TOLERANCE`), and the reconstruction of a few generated samples: the encoder's
   G.synthesis(E(x)) must be closer to x than the do-nothing baseline G.synthesis(latent_avg)
   (mean squared error ratio below `RECONSTRUCTION_RATIO_MAX`). Tolerances are ours.

Errors are `UserError`s naming both files and the way out (`--force`, or gradstyle-train-encoder).

Shape letters: N batch, C channels, H W height width, L W+ rows, D w_dim.
"""

import torch

from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch.dnnlib import UserError

#----------------------------------------------------------------------------

LATENT_AVG_TOLERANCE = 0.05         # ours: |latent_avg - w_avg| / |w_avg|; a trained pair gives 0 (latent_avg is copied)
RECONSTRUCTION_RATIO_MAX = 0.9      # ours: MSE(G(E(x)), x) / MSE(G(latent_avg), x) on generated samples (trained pairs: ~0.6)
NUM_SAMPLES = 8                     # ours: generated samples of the reconstruction check (4 gave 0.93 for a pair at 0.62 on 16)
_HINT = 'train an encoder for this generator with gradstyle-train-encoder'

def mean_w(G, num_samples=10000, seed=0):
    """G.mapping.w_avg [D], or the mean of mapped z when the generator tracks none (all zeros)."""
    w_avg = getattr(G.mapping, 'w_avg', None)
    if isinstance(w_avg, torch.Tensor) and w_avg.abs().sum() > 0:
        return w_avg.detach().float().clone()
    with torch.no_grad():
        z = torch.randn([num_samples, G.z_dim], generator=torch.Generator().manual_seed(seed)).to(next(G.parameters()).device)
        return G.mapping(z, None, skip_w_avg_update=True)[:, 0].mean(0).float()

def check_shapes(G, E, network_name, encoder_name):
    """UserError unless E can feed G: W+ [num_ws, w_dim], image channels, input resolution."""
    pair = f'--encoder: {encoder_name} and the generator of --network {network_name}'
    if not all(hasattr(E, key) for key in ('num_ws', 'w_dim', 'img_resolution', 'img_channels')):
        raise UserError(f'--encoder: {encoder_name} holds a {type(E).__name__}, not an encoder (needs num_ws, w_dim, img_resolution)')
    if E.img_channels != G.img_channels:
        raise UserError(f'{pair} do not fit: the encoder takes {E.img_channels}-channel images, the generator makes '
            f'{G.img_channels}-channel images ({_HINT})')
    if (E.num_ws, E.w_dim) != (G.num_ws, G.w_dim):
        raise UserError(f'{pair} do not fit: the encoder gives W+ codes [{E.num_ws}, {E.w_dim}], the generator takes '
            f'[{G.num_ws}, {G.w_dim}] (num_ws, w_dim) ({_HINT})')
    if E.img_resolution > G.img_resolution:
        raise UserError(f'{pair} do not fit: the encoder needs inputs of at least {E.img_resolution}x{E.img_resolution}, the '
            f'generator makes {G.img_resolution}x{G.img_resolution} images ({_HINT})')

def latent_avg_distance(G, E):
    """|mean row of E.latent_avg - w_avg|_2 / |w_avg|_2."""
    w_avg = mean_w(G).to(E.latent_avg.device)
    return float((E.latent_avg.float().mean(0) - w_avg).norm() / w_avg.norm().clamp(min=1e-8))

@torch.no_grad()
def reconstruction_ratio(G, E, num_samples=NUM_SAMPLES, seed=0):
    """MSE(G(E(x)), x) / MSE(G(latent_avg), x) over `num_samples` generated images x (const noise, eval mode)."""
    device = E.latent_avg.device
    z = torch.randn([num_samples, G.z_dim], generator=torch.Generator().manual_seed(seed)).to(device)
    ws = G.mapping(z, None, skip_w_avg_update=True)
    x = G.synthesis(ws, noise_mode='const')                                 # [NCHW]
    was_training = E.training
    rec = G.synthesis(E.eval()(x)[0], noise_mode='const')
    E.train(was_training)
    avg = G.synthesis(E.latent_avg.unsqueeze(0).expand(num_samples, -1, -1).to(ws.dtype), noise_mode='const')
    return float((rec - x).square().mean() / (avg - x).square().mean().clamp(min=1e-12))

def check_pairing(G, E, network_name, encoder_name, force=False):
    """Raise UserError (naming both files) unless E is the encoder of G; returns the figures (None with force).

    Example:
        >>> check_pairing(G, E, 'fashion.pkl', 'encoder-snapshot.pkl')
        {'latent_avg_distance': 0.0, 'reconstruction_ratio': 0.31}
    """
    check_shapes(G, E, network_name, encoder_name)
    if force:
        return None
    pair = f'--encoder: {encoder_name} does not belong to the generator of --network {network_name}'
    dist = latent_avg_distance(G, E)
    if dist > LATENT_AVG_TOLERANCE:
        raise UserError(f'{pair}: its latent_avg is {dist:.1%} away from the generator\'s w_avg (at most '
            f'{LATENT_AVG_TOLERANCE:.0%} for a pair); {_HINT}, or pass --force to use them anyway')
    ratio = reconstruction_ratio(G, E)
    if ratio > RECONSTRUCTION_RATIO_MAX:
        raise UserError(f'{pair}: it reconstructs the generator\'s own samples with {ratio:.2f}x the error of latent_avg alone '
            f'(a pair needs at most {RECONSTRUCTION_RATIO_MAX:.2f}x); {_HINT} (or train it longer), or pass --force to use them anyway')
    return dnnlib.EasyDict(latent_avg_distance=dist, reconstruction_ratio=ratio)

#----------------------------------------------------------------------------
