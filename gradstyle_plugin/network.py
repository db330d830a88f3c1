"""`GradStyleNet`: the generator with GradStyle attached plus its encoder, as one persistent module.

A snapshot or a checkpoint holding a GradStyleNet carries everything an edit needs (G with its
GRMs/GAMs and their config in `init_kwargs`, the encoder and its `latent_avg`) and loads through
the toolkit's safe loader (`stylegan2_ada_pytorch.legacy.load_network_pkl`).

    >>> net = GradStyleNet.from_modules(attach.attach(G, preset='paper'), E)
    >>> out = net(img, direction=pose, alpha=3.0)         # StreamOutputs: img_rec, img_edit, ...
"""

import torch

from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch.torch_utils import misc
from stylegan2_ada_pytorch.torch_utils import persistence
from gradstyle_plugin import streams

#----------------------------------------------------------------------------

@persistence.persistent_class
class GradStyleNet(torch.nn.Module):
    def __init__(self,
        G_kwargs,                   # Generator kwargs with class_name (GradStyle stages in synthesis_kwargs.injector_kwargs).
        encoder_kwargs,             # Encoder kwargs with class_name.
    ):
        super().__init__()
        self.G = dnnlib.util.construct_class_by_name(**G_kwargs)
        self.encoder = dnnlib.util.construct_class_by_name(**encoder_kwargs)
        if self.encoder.num_ws != self.G.num_ws or self.encoder.w_dim != self.G.w_dim:
            raise ValueError(f'encoder produces W+ [{self.encoder.num_ws}, {self.encoder.w_dim}] but the generator takes '
                f'[{self.G.num_ws}, {self.G.w_dim}]')

    @classmethod
    def from_modules(cls, G, encoder):
        """Wrap existing modules (rebuilt from their init kwargs, weights copied, eval mode)."""
        G_kwargs = dnnlib.EasyDict(class_name=_class_name(G), **G.init_kwargs)
        encoder_kwargs = dnnlib.EasyDict(class_name=_class_name(encoder), **encoder.init_kwargs)
        parts = torch.nn.ModuleDict(dict(G=G, encoder=encoder))    # the same tensor names as the wrapper's
        return misc.rebuild_module(parts, dict(G_kwargs=G_kwargs, encoder_kwargs=encoder_kwargs), cls=cls).eval()

    def forward(self, img, direction=None, alpha=0.0, **stream_kwargs):
        return streams.run_streams(self.G, self.encoder, img, direction=direction, alpha=alpha, **stream_kwargs)

def _class_name(module):
    return f'{type(module).__module__}.{type(module).__name__}'

#----------------------------------------------------------------------------
