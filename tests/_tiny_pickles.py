"""Test helper: the tiny 32x32 generator and a small encoder paired with it, written as toolkit pickles."""

import os

import torch

from stylegan2_ada_pytorch import dnnlib, legacy, testing
from gradstyle_plugin import encoder as encoder_module

def write_tiny_generator_and_encoder(folder):
    """Write folder/G.pkl (G, D, G_ema) and folder/encoder.pkl; return their paths (str, str)."""
    G = testing.tiny_generator()
    G_pkl, E_pkl = os.path.join(folder, 'G.pkl'), os.path.join(folder, 'encoder.pkl')
    legacy.save_network_pkl(dict(G=G, D=testing.tiny_discriminator(), G_ema=G), G_pkl)
    torch.manual_seed(0)
    E = dnnlib.util.construct_class_by_name(**encoder_module.small_encoder_kwargs(32, w_dim=32, feature_channels=32)).eval()
    with torch.no_grad():
        E.latent_avg.copy_(G.mapping.w_avg)   # e4e adds the generator's mean w
    legacy.save_network_pkl(dict(encoder=E), E_pkl)
    return G_pkl, E_pkl
