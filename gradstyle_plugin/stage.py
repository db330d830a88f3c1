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
('F' is what the gate fused: F in the reconstruction stream, F' in the editing stream). When the
stage is the generator's last block, its refined x reaches the image only through a bias-free 1x1
conv to RGB (`torgb`) applied to gF, because no later block consumes x.

Gradient routing of the shared Gate&Fusion (paper 3.4: the GRMs "with their Gate&Fusion" learn
from the reconstruction error only, "with the gradient from GAMs detached"). By default the
editing stream calls the gate (and `torgb`) through *detached* copies of their weights
(`torch.func.functional_call`): editing-stream losses still reach the Aligner through the gate's
inputs, but never move the shared gate. `edit_trains_gate=True` restores the other reading (the
gate also learns from the editing losses) for ablations.

Per-call inference knobs (all optional, in `inject_kwargs`, e.g. through `streams.run_streams`):

    stages      iterable of stage names: only these stages inject; the others are the identity.
    gate_scale  {stage: float}: multiplies g at that stage (f~ = f + s * g * F), both streams; the
                fidelity/editability dial (0 = the plain generator at that stage). Missing stages: 1.
    align       False: the editing stream injects the residuals unaligned through the gate
                (F' = F^, HFGI without alignment; the `no-gam` ablation). Default True.
    mu          overrides the Aligner's Selective Attention kept fraction (1 = dense attention).
    edit_trains_gate  see above (training only; default False).

Example:
    >>> G.synthesis(ws, inject_kwargs=dict(stream='rec', features=T, stages={'b16', 'b32'}, gate_scale={'b32': 0.5}))

Shape letters: N batch, C channels of the stage, c encoder feature channels, H/W stage resolution.
"""

import torch

from stylegan2_ada_pytorch import injection
from stylegan2_ada_pytorch.torch_utils import misc
from stylegan2_ada_pytorch.torch_utils import persistence
from gradstyle_plugin.grm import GateFusion, GradualResidualModule
from gradstyle_plugin.gam import Aligner

STREAMS = ('rec', 'edit')
KNOBS = ('stages', 'gate_scale', 'align', 'mu', 'edit_trains_gate')

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
            # Bias-free, so that gF = 0 (an untrained GRM, gate_scale 0, a stage switched off)
            # leaves the image exactly as the plain generator makes it.
            self.torgb = torch.nn.Conv2d(channels, img_channels, kernel_size=1, bias=False)

    def forward(self, x, img, *, stage, ws, stream=None, features=None, residuals=None, record=None,
                stages=None, gate_scale=None, align=True, mu=None, edit_trains_gate=False, **inject_kwargs):
        if stream is None or (stages is not None and stage not in stages):
            return x, img
        misc.assert_shape(x, [None, self.channels, None, None])
        f = x.to(torch.float32)
        if stream == 'rec':
            F = self.grm(_lookup(features, 'features', stage), f)
        elif stream == 'edit':
            F_hat = _lookup(residuals, 'residuals', stage).to(torch.float32)
            F = self.aligner(F_hat, f, mu=mu) if align else F_hat
        else:
            raise ValueError(f'GradStyleStage: stream must be one of {STREAMS} or None, got {stream!r}')
        scale = 1.0 if gate_scale is None else float(gate_scale.get(stage, 1.0))
        frozen = stream == 'edit' and not edit_trains_gate and torch.is_grad_enabled()
        f_new, g = _call(self.gate, frozen, f, F, scale=scale)
        gF = f_new - f
        if record is not None:
            record[stage] = dict(F=F, g=g, gF=gF)
        if self.torgb is not None and img is not None:
            img = img + _call(self.torgb, frozen, gF)
        return f_new.to(x.dtype), img

    def grm_parameters(self):
        """Parameters of the GRM (W_T, W_f, E_res): trained by the reconstruction stream only."""
        return list(self.grm.parameters())

    def gam_parameters(self):
        """Parameters of the Aligner: trained by the editing stream and L_aligner."""
        return list(self.aligner.parameters())

    def fusion_parameters(self):
        """Parameters of the shared Gate&Fusion (and `torgb`): reconstruction losses only, unless edit_trains_gate."""
        return list(self.gate.parameters()) + (list(self.torgb.parameters()) if self.torgb is not None else [])

    def extra_repr(self):
        return f'channels={self.channels:d}, is_last={self.torgb is not None}'

def _lookup(table, name, stage):
    if table is None or stage not in table:
        raise KeyError(f'GradStyleStage: inject_kwargs[{name!r}] has no entry for stage {stage!r}')
    return table[stage]

def _call(module, frozen, *args, **kwargs):
    # module(*args) or, when `frozen`, the same computation with its weights detached (gradients
    # still flow to the inputs).
    if not frozen:
        return module(*args, **kwargs)
    params = {name: p.detach() for name, p in module.named_parameters()}
    return torch.func.functional_call(module, params, args, kwargs)

#----------------------------------------------------------------------------
