"""The methods `gradstyle-eval` compares, all through the same generator, encoder and hooks (paper
Tables 1-2 and the Fig. 8 ablations), plus the W+ optimisation baseline.

    method      reconstruction                      edit (W+ + alpha dW)                      paper
    e4e         G(W+), no stage injects             G(W+ edited)                               e4e (low-bit inversion)
    grm         reconstruction stream (GRMs)        editing stream, F injected UNALIGNED       HFGI-style, no alignment
    gradstyle   reconstruction stream               editing stream, F aligned by the GAMs      GradStyle (full)
    dense       as gradstyle                        as gradstyle with mu = 1 (dense attention) ours: Selective Attention off
    stage-low   only the lowest stage injects       only the lowest stage injects              Fig. 8 "low stage"
    stage-high  only the highest stage injects      only the highest stage injects             Fig. 8 "high stage"
    no-grm      the GRM outputs replaced by 0       the same zero residuals                    Fig. 8 "w/o GRM"
    no-gam      as grm                              as grm                                     Fig. 8 "w/o GAM"
    project     W+ optimised per image (Adam)       G(W+ edited)                               optimisation upper reference

Inference-time switches of ONE trained network (the paper's Fig. 8 variants were retrained; ours
switch the part off in the trained model, so they say what the part contributes, not what a model
trained without it would do). Consequences, checked in tests/eval/test_eval_methods.py: `no-gam`
and `grm` are the same computation; `no-grm` is the plain generator, i.e. equals `e4e` (the gate
fuses g * 0 and the last stage's torgb has no bias). `project` starts from the encoder's W+ (ours)
and minimises MSE (+ LPIPS when an LPIPS net is given) for `steps` Adam steps (lr ours); generator
tuning (PTI) is not done.

Shape letters: N batch, L num_ws, D w_dim, C channels, R resolution.
"""

import dataclasses

import torch

from stylegan2_ada_pytorch.dnnlib import UserError
from gradstyle_plugin.attach import stage_modules
from gradstyle_plugin.edit import NOISE_MODE, Inversion
from gradstyle_plugin.streams import editing_stream, gam_identity_error, reconstruction_stream

PROJECT_STEPS   = 300       # Adam steps of `project` (ours: "a few hundred").
PROJECT_LR      = 0.01      # Adam learning rate of `project` (ours).

#----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class MethodSpec:
    name:       str
    rec:        str             # 'plain' (G only), 'grm' (GRMs inject), 'zero' (residuals 0)
    edit:       str             # 'plain', 'aligned' (GAMs), 'unaligned' (F as is)
    stages:     str = 'all'     # 'all', 'low' (first stage only), 'high' (last stage only)
    mu:         float = None    # Selective Attention kept fraction override (None: as trained)
    optimise:   bool = False    # W+ optimisation per image (project)
    text:       str = ''

SPECS = {s.name: s for s in [
    MethodSpec('e4e',        rec='plain', edit='plain',     text='encoder W+ only, plain synthesis'),
    MethodSpec('grm',        rec='grm',   edit='unaligned', text='GRM residuals, injected unaligned in edits (HFGI without alignment)'),
    MethodSpec('gradstyle',  rec='grm',   edit='aligned',   text='full GradStyle'),
    MethodSpec('dense',      rec='grm',   edit='aligned',   mu=1.0, text='GradStyle with mu = 1 (dense attention)'),
    MethodSpec('stage-low',  rec='grm',   edit='aligned',   stages='low', text='residuals at the lowest stage only'),
    MethodSpec('stage-high', rec='grm',   edit='aligned',   stages='high', text='residuals at the highest stage only'),
    MethodSpec('no-grm',     rec='zero',  edit='unaligned', text='GRM outputs replaced by 0 (= the plain generator)'),
    MethodSpec('no-gam',     rec='grm',   edit='unaligned', text='GAMs off: residuals injected unaligned (= grm)'),
    MethodSpec('project',    rec='plain', edit='plain',     optimise=True, text='W+ optimisation per image from the encoder W+'),
]}
METHODS = list(SPECS)
GRADSTYLE_METHODS = [name for name, s in SPECS.items() if s.rec != 'plain']

def parse_methods(names, has_gradstyle):
    """Validated method names (all by default: every method the network supports)."""
    if not names:
        return [m for m in METHODS if has_gradstyle or m not in GRADSTYLE_METHODS]
    names = [n.strip() for item in names for n in str(item).split(',') if n.strip()]
    unknown = [n for n in names if n not in SPECS]
    if unknown:
        raise UserError(f'--methods: unknown method {unknown[0]!r} (choose from {", ".join(METHODS)})')
    if len(set(names)) != len(names):
        raise UserError(f'--methods: a method is given twice ({",".join(names)})')
    need = [n for n in names if n in GRADSTYLE_METHODS]
    if need and not has_gradstyle:
        raise UserError(f'--methods: {", ".join(need)} need a GradStyle snapshot; --network has a plain generator (use e4e, project)')
    return names

#----------------------------------------------------------------------------

class Method:
    """One method bound to a generator G (with or without GradStyle stages) and an encoder (in memory only).

    `invert(img)` -> Inversion(ws, img_rec, residuals); `render(inv, ws_edit)` -> edited image;
    `identity_error(inv)` -> {stage: [N]} |F' - F|_1 / |F|_1 at unchanged codes (empty where no GAM runs).
    """

    def __init__(self, name, G, encoder, lpips_net=None, project_steps=PROJECT_STEPS, project_lr=PROJECT_LR):
        self.spec = SPECS[name]
        self.name = name
        self.G, self.encoder = G, encoder
        self.lpips_net = lpips_net
        self.project_steps, self.project_lr = int(project_steps), float(project_lr)
        names = list(stage_modules(G))
        if self.spec.rec != 'plain' and not names:
            raise UserError(f'--methods: {name} needs a GradStyle snapshot (the generator has no GradStyle stages)')
        self.stage_names = {'all': names, 'low': names[:1], 'high': names[-1:]}[self.spec.stages]
        self.knobs = dict(stages=None if self.spec.stages == 'all' else set(self.stage_names))

    def _edit_knobs(self):
        return dict(self.knobs, align=self.spec.edit == 'aligned', mu=self.spec.mu)

    def _zeros(self, n, ref):
        ch = self.G.synthesis.stage_channels
        return {s: ref.new_zeros([n, ch[s], int(s[1:]), int(s[1:])]) for s in self.stage_names}

    def invert(self, img):
        with torch.no_grad():
            ws, features = self.encoder(img)
        if self.spec.optimise:
            ws = self._project(img, ws)
        with torch.no_grad():
            if self.spec.rec == 'plain':
                return Inversion(ws=ws, img_rec=self.G.synthesis(ws, noise_mode=NOISE_MODE), residuals={})
            if self.spec.rec == 'zero':
                residuals = self._zeros(ws.shape[0], ws)
                return Inversion(ws=ws, img_rec=self.render(Inversion(ws, None, residuals), ws), residuals=residuals)
            img_rec, record = reconstruction_stream(self.G, ws, features, noise_mode=NOISE_MODE, **self.knobs)
            return Inversion(ws=ws, img_rec=img_rec, residuals={s: r['F'] for s, r in record.items()})

    @torch.no_grad()
    def render(self, inv, ws_edit):
        if self.spec.edit == 'plain':
            return self.G.synthesis(ws_edit, noise_mode=NOISE_MODE)
        return editing_stream(self.G, ws_edit, inv.residuals, noise_mode=NOISE_MODE, **self._edit_knobs())[0]

    @torch.no_grad()
    def identity_error(self, inv):
        if self.spec.edit == 'plain' or self.spec.rec == 'zero':
            return {}
        return gam_identity_error(self.G, inv.ws, inv.residuals, noise_mode=NOISE_MODE, **self._edit_knobs())

    def _project(self, img, ws_init):
        # W+ optimisation of MSE (+ LPIPS) at the network resolution; G stays frozen.
        ws = ws_init.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([ws], lr=self.project_lr)
        with torch.enable_grad():
            for _ in range(self.project_steps):
                out = self.G.synthesis(ws, noise_mode=NOISE_MODE)
                loss = (out - img).square().mean([1, 2, 3])
                if self.lpips_net is not None:
                    rgb = (lambda x: x.expand(-1, 3, -1, -1)) if img.shape[1] == 1 else (lambda x: x)
                    loss = loss + self.lpips_net(rgb(out), rgb(img)).flatten()
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt.step()
        return ws.detach()

    def parameter_count(self):
        """Parameters the method runs: encoder + generator + the GradStyle parts it uses at its stages."""
        base = sum(p.numel() for n, p in self.G.named_parameters() if not n.startswith('synthesis.injectors.'))
        total = base + sum(p.numel() for p in self.encoder.parameters())
        modules = stage_modules(self.G)
        for s in (self.stage_names if self.spec.rec != 'plain' else []):
            m = modules[s]
            parts = m.fusion_parameters() + (m.grm_parameters() if self.spec.rec == 'grm' else [])
            parts += m.gam_parameters() if self.spec.edit == 'aligned' else []
            total += sum(p.numel() for p in parts)
        return int(total)

    def record(self):
        return dict(name=self.name, description=self.spec.text, stages=self.stage_names if self.spec.rec != 'plain' else [],
            reconstruction=self.spec.rec, edit=self.spec.edit, mu=self.spec.mu,
            project=dict(steps=self.project_steps, lr=self.project_lr, init='encoder W+ (ours)', loss='MSE' + (' + LPIPS' if self.lpips_net is not None else ''))
            if self.spec.optimise else None)

#----------------------------------------------------------------------------
