"""One GradStyle stage: the injector that refines a synthesis block's output in both streams.

GradStyle (section 3.2-3.3) inserts, between two generation stages, a GRM in the reconstruction
stream and a GAM in the editing stream, and the GAM's Gate&Fusion shares its weights with the
GRM's. One persistent module per stage therefore owns the GRM (W_T, W_f, E_res), the Aligner and
the shared Gate&Fusion, and switches on `inject_kwargs['stream']`:

    stream='rec':  F = GRM(T[stage], f);          f~ = f + g * F,  g = sigmoid(W_g[f, F])   (eq. 1-4)
    stream='edit': F' = Aligner(R[stage], f);     f~ = f + g * F', g = sigmoid(W_g[f, F'])  (eq. 6-7)
    no stream:     the plain generator (identity).

`features` (T_m from the encoder) and `residuals` (the F_m the editing stream aligns, possibly
detached and perspective-transformed) are dicts keyed by stage name; when `record` (a dict the
caller owns) is given, the stage stores its intermediates there: record[stage] = {'F', 'g', 'gF'}
('F' is the aligned F' in the editing stream). When the stage is the generator's last block,
its refined x reaches the image only through a 1x1 conv to RGB (`torgb`, zero bias) applied to
g * F, because no later block consumes x.

Shape letters: N batch, C channels of the stage, c encoder feature channels, H/W stage resolution.
"""

import torch

from stylegan2_ada_pytorch import injection
from stylegan2_ada_pytorch.torch_utils import misc
from stylegan2_ada_pytorch.torch_utils import persistence
from gradstyle_plugin.grm import GateFusion, GradualResidualModule
from gradstyle_plugin.gam import Aligner

STREAMS = ('rec', 'edit')

#----------------------------------------------------------------------------

@persistence.persistent_class
class GradStyleStage(injection.Injector):
    def __init__(self,
        channels,                   # C: channels of x after the synthesis block of this stage.
        feature_channels,           # c: channels of the encoder features T_m at this stage.
        is_last         = False,    # Is this the generator's output block? Adds `torgb`.
        img_channels    = 3,        # Image channels (for `torgb`).
        grm_kwargs      = {},       # Arguments for GradualResidualModule.
        aligner_kwargs  = {},       # Arguments for Aligner.
        gate_kwargs     = {},       # Arguments for GateFusion.
    ):
        super().__init__()
        self.channels = channels
        self.grm = GradualResidualModule(channels, feature_channels, **grm_kwargs)
        self.aligner = Aligner(channels, **aligner_kwargs)
        self.gate = GateFusion(channels, **gate_kwargs)
        self.torgb = None
        if is_last:
            # Only the bias starts at zero: gF is zero until the GRM learns, so the image is
            # unchanged at attach time, while the gradient still reaches the GRM through the weight.
            self.torgb = torch.nn.Conv2d(channels, img_channels, kernel_size=1)
            torch.nn.init.zeros_(self.torgb.bias)

    def forward(self, x, img, *, stage, ws, stream=None, features=None, residuals=None, record=None, **inject_kwargs):
        if stream is None:
            return x, img
        misc.assert_shape(x, [None, self.channels, None, None])
        f = x.to(torch.float32)
        if stream == 'rec':
            F = self.grm(_lookup(features, 'features', stage), f)
        elif stream == 'edit':
            F = self.aligner(_lookup(residuals, 'residuals', stage).to(torch.float32), f)
        else:
            raise ValueError(f'GradStyleStage: stream must be one of {STREAMS} or None, got {stream!r}')
        f_new, g = self.gate(f, F)
        gF = f_new - f
        if record is not None:
            record[stage] = dict(F=F, g=g, gF=gF)
        if self.torgb is not None and img is not None:
            img = img + self.torgb(gF)
        return f_new.to(x.dtype), img

    def grm_parameters(self):
        """Parameters of the GRM (W_T, W_f, E_res): trained by the reconstruction stream only."""
        return list(self.grm.parameters())

    def gam_parameters(self):
        """Parameters of the Aligner: trained by the editing stream and L_aligner."""
        return list(self.aligner.parameters())

    def extra_repr(self):
        return f'channels={self.channels:d}, is_last={self.torgb is not None}'

def _lookup(table, name, stage):
    if table is None or stage not in table:
        raise KeyError(f'GradStyleStage: inject_kwargs[{name!r}] has no entry for stage {stage!r}')
    return table[stage]

#----------------------------------------------------------------------------
