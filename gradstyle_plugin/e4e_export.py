"""Write a trained E4EEncoder as an official e4e checkpoint (Tov et al. 2021, `e4e_*_encode.pt` layout).

The file is a plain torch.save of a dict (readable with weights_only=True):

    state_dict  {'encoder.<key>': tensor} for every E4EEncoder state_dict entry except latent_avg
    latent_avg  [num_ws, w_dim]
    opts        dict: encoder_type 'Encoder4Editing', stylegan_size, start_from_latent_avg True,
                input_nc, and (ours) `gradstyle_encoder_kwargs` when the architecture is not e4e's
                IR-SE-50 (a `small` encoder), which `encoder.load_e4e_checkpoint` reads.

Rows beyond the encoder's progressive stage are written with a zero map2style linear layer, so
the checkpoint (which always uses every row) gives the same W+ as the encoder did.
"""

import torch

from stylegan2_ada_pytorch import dnnlib
from gradstyle_plugin import encoder as encoder_module

#----------------------------------------------------------------------------

def is_e4e_architecture(encoder):
    """True when `encoder` has exactly the official e4e configuration for its num_ws."""
    official = encoder_module.e4e_encoder_kwargs(num_ws=encoder.num_ws)
    ours = encoder_module.encoder_kwargs(encoder)
    return all(ours.get(key) == value for key, value in official.items())

def e4e_checkpoint(encoder):
    """The checkpoint dict of `encoder` (CPU tensors, plain-data opts)."""
    state = {key: value.detach().cpu().clone() for key, value in encoder.state_dict().items() if key not in encoder_module.EXTRA_BUFFERS}
    for idx in range(encoder.progressive_stage + 1, encoder.num_ws):     # unused rows: delta 0
        for name in ('weight', 'bias'):
            key = f'styles.{idx}.linear.{name}'
            if key in state:
                state[key] = torch.zeros_like(state[key])
    opts = dict(encoder_type='Encoder4Editing', stylegan_size=2 ** ((encoder.num_ws + 2) // 2), start_from_latent_avg=True,
        input_nc=encoder.img_channels, exported_by='gradstyle-train-encoder')
    if not is_e4e_architecture(encoder):
        kwargs = dict(encoder_module.encoder_kwargs(encoder))
        kwargs.pop('class_name')
        kwargs.pop('progressive_stage', None)
        opts['gradstyle_encoder_kwargs'] = kwargs
    return dict(state_dict={f'encoder.{key}': value for key, value in state.items()},
        latent_avg=encoder.latent_avg.detach().cpu().clone(), opts=opts)

def export_e4e_checkpoint(encoder, path):
    """Write `encoder` to `path` (temp file + rename).

    Example:
        >>> export_e4e_checkpoint(snapshot['encoder'], 'my_e4e_encode.pt')
        >>> E, info = load_e4e_checkpoint('my_e4e_encode.pt')     # same W+ as snapshot['encoder']
    """
    ckpt = e4e_checkpoint(encoder)
    with dnnlib.util.atomic_write(path, 'wb') as f:
        torch.save(ckpt, f)
    return ckpt

#----------------------------------------------------------------------------
