"""A clean-room, pickle-compatible implementation of NVIDIA's StyleGAN2-ADA-PyTorch toolkit.

    >>> import stylegan2_ada_pytorch as sg
    >>> with open('ffhq.pkl', 'rb') as f:
    ...     G = sg.load_network_pkl(f)['G_ema']          # safe: never runs code stored in the file
    >>> img = G(z, None, truncation_psi=0.7, noise_mode='const')   # [N, 3, 1024, 1024] in about [-1, 1]

Subpackages keep the toolkit's names: `dnnlib`, `torch_utils` (persistence, misc, training_stats,
custom_ops, ops), `networks`, `training` (dataset, augment, loss, training_loop), `metrics`,
`legacy`. Plugins extend the synthesis network through `injection` and the entry-point
`registry`.
"""

from . import dnnlib
from .legacy import NetworkPickleError, UnsafePickleError, load_network_pkl, save_network_pkl
from .networks import Discriminator, Generator, MappingNetwork, SynthesisNetwork
from .injection import Injector, InjectorHandle, stage_names
from .registry import injector_class_name, list_injectors, load_injector

__all__ = [
    'dnnlib',
    'load_network_pkl', 'save_network_pkl', 'UnsafePickleError', 'NetworkPickleError',
    'Generator', 'Discriminator', 'MappingNetwork', 'SynthesisNetwork',
    'Injector', 'InjectorHandle', 'stage_names',
    'list_injectors', 'load_injector', 'injector_class_name',
]
