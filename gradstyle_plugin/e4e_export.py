"""Write a trained E4EEncoder as an official e4e checkpoint (Tov et al. 2021, `e4e_*_encode.pt` layout).

The file is a plain torch.save of a dict (readable with weights_only=True):

    state_dict  {'encoder.<key>': tensor} for every E4EEncoder state_dict entry except latent_avg,
                and {'decoder.<key>': tensor} of the generator in rosinality's layout when it has
                one (checked: converted back, it must draw the same images)
    latent_avg  [num_ws, w_dim]
    opts        dict: encoder_type 'Encoder4Editing', stylegan_size, start_from_latent_avg True,
                input_nc, and (ours) `gradstyle_encoder_kwargs` when the architecture is not e4e's
                IR-SE-50 (a `small` encoder), which `encoder.load_e4e_checkpoint` reads.

Rows beyond the encoder's progressive stage are written with a zero map2style linear layer, so
the checkpoint (which always uses every row) gives the same W+ as the encoder did.
"""

import torch

from stylegan2_ada_pytorch import _convert_rosinality, dnnlib
from stylegan2_ada_pytorch._safe_unpickle import NetworkPickleError
from gradstyle_plugin import encoder as encoder_module

#----------------------------------------------------------------------------

def is_e4e_architecture(encoder):
    """True when `encoder` has exactly the official e4e configuration for its num_ws."""
    official = encoder_module.e4e_encoder_kwargs(num_ws=encoder.num_ws)
    ours = encoder_module.encoder_kwargs(encoder)
    return all(ours.get(key) == value for key, value in official.items())

@torch.no_grad()
def decoder_state(G, latent_avg):
    """(rosinality state dict of G, None) or (None, why not): G must convert back to the same images."""
    try:
        sd = _convert_rosinality.rosinality_state(G)
        G_back = _convert_rosinality.convert_rosinality_state(sd, latent_avg, type(G))
    except NetworkPickleError as err:
        return None, str(err)
    z = torch.randn([2, G.z_dim], generator=torch.Generator().manual_seed(0))
    a = G(z.to(next(G.parameters()).device), None, noise_mode='const', force_fp32=True).cpu()
    b = G_back(z, None, noise_mode='const', force_fp32=True)
    if not torch.allclose(a, b, atol=1e-4 * max(float(a.abs().max()), 1.0)):
        return None, 'converted to the rosinality layout it draws different images (options rosinality lacks, e.g. conv_clamp)'
    return sd, None

def e4e_checkpoint(encoder, G=None):
    """The checkpoint dict of `encoder` (CPU tensors, plain-data opts); with the decoder of G when it converts.

    Returns (checkpoint, note): note says why no decoder.* was written (None when it was, or no G).
    """
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
    state_dict = {f'encoder.{key}': value for key, value in state.items()}
    note = None
    if G is not None:
        decoder, note = decoder_state(G, encoder.latent_avg.detach().cpu()[0])
        state_dict.update({f'decoder.{key}': value for key, value in (decoder or {}).items()})
    return dict(state_dict=state_dict, latent_avg=encoder.latent_avg.detach().cpu().clone(), opts=opts), note

def export_e4e_checkpoint(encoder, path, G=None):
    """Write `encoder` (and the decoder of G, when it converts) to `path` (temp file + rename); returns (ckpt, note).

    Example:
        >>> export_e4e_checkpoint(snapshot['encoder'], 'my_e4e_encode.pt', G=snapshot['G_ema'])
        >>> E, info = load_e4e_checkpoint('my_e4e_encode.pt')          # same W+ as snapshot['encoder']
        >>> G = legacy.load_rosinality_generator('my_e4e_encode.pt')   # same images as snapshot['G_ema']
    """
    ckpt, note = e4e_checkpoint(encoder, G)
    with dnnlib.util.atomic_write(path, 'wb') as f:
        torch.save(ckpt, f)
    return ckpt, note

#----------------------------------------------------------------------------
