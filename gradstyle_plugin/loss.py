"""GradStyle's self-supervised training objective (section 3.4, eq. 5 and 10-15) on the toolkit's Loss API.

The editing stream runs with alpha = 0, and the residuals it aligns are the reconstruction
stream's F_m, detached (so the GRMs learn from the reconstruction losses only) and warped by one
random perspective per sample (the misaligned pairs {F^_m, f_m^edi} with F_m as ground truth;
`transforms.RandomPerspective`, HFGI's recipe by default). The shared Gate&Fusion is trained by
the reconstruction stream only (the editing stream uses it through detached weights) unless
`edit_trains_gate` (see `stage.py`).

    L = sum over streams s in {rec, edit} of
            l2 * |X - X_s|^2 + lpips * LPIPS(X, X_s) + id * (1 - cos(ID(X), ID(X_s))) + adv * softplus(-D(X_s))
        + f * L_f,              L_f       = sum_m |g_m F_m|_1 / n_ref      (eq. 5, reconstruction stream)
        + aligner * L_aligner,  L_aligner = sum_m |F'_m - F_m|_1 / n_ref   (eq. 10, F_m unwarped and detached)

The image terms (`image_losses.ImageLosses`) are computed at the loss resolution (`loss_res`,
default e4e's 256 for generators >= 256 px). The L1 terms are the paper's per-stage SUMS, so a
64x64 stage weighs 16x a 16x16 one, divided by one constant n_ref = the element count (C*H*W) of
the largest stage so the numbers stay per-element sized; all per sample [N], averaged over the
batch.

D is fine-tuned alongside with the non-saturating logistic loss on X against X_r and X_e, and lazy
R1. Phases: 'Gboth' (or 'Gmain') trains what G_trainable selects (GradStyle's stages); 'Dmain',
'Dreg' (or 'Dboth') train D. G's own weights and the encoder stay frozen.

Shape letters: N batch, C channels, R resolution.
"""

import torch

from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch.torch_utils import training_stats
from stylegan2_ada_pytorch.torch_utils.ops import conv2d_gradfix
from stylegan2_ada_pytorch.training.loss import Loss
from gradstyle_plugin import image_losses, streams, transforms

#----------------------------------------------------------------------------

def stage_l1(maps, ref_numel=None):
    """sum_m |maps[m]|_1 / n_ref per sample [N]; n_ref = C*H*W of the largest map unless given.

    Example:
        >>> stage_l1({'b16': gF16, 'b32': gF32})      # = (|gF16|.sum + |gF32|.sum) / gF32[0].numel()
    """
    ref = max(x[0].numel() for x in maps.values()) if ref_numel is None else ref_numel
    return sum(x.abs().flatten(1).sum(dim=1) for x in maps.values()) / ref

#----------------------------------------------------------------------------

class GradStyleLoss(Loss):
    def __init__(self, device, G_mapping, G_synthesis, D, augment_pipe=None, encoder=None,
        l2_weight       = 1.0,      # lambda of the L2 terms (paper: eq. 15 gives L_l2 weight 1).
        lpips_weight    = 0.8,      # lambda_lpips (ours: e4e's value); applies only with lpips_weights.
        id_weight       = 0.1,      # lambda_id (ours: e4e's value for faces); applies only with id_weights.
        adv_weight      = 0.1,      # lambda_adv (ours).
        f_weight        = 0.01,     # lambda_f of the gate regulariser L_f (ours).
        aligner_weight  = 1.0,      # lambda_aligner (ours).
        r1_gamma        = 10,       # R1 weight when fine-tuning D (ours: e4e's / StyleGAN2's value).
        loss_res        = None,     # Resolution of the image terms; None = 256 for >= 256 px generators, else full.
        perspective     = 0.15,     # Strength of the random perspective of the residuals (ours: HFGI's distortion_scale).
        perspective_p   = 0.8,      # Probability a sample is warped (ours: HFGI's aug_rate default).
        perspective_mode = 'inward', # 'inward' (torchvision / HFGI) or 'two-sided'.
        edit_trains_gate = False,   # Let editing-stream losses train the shared Gate&Fusion (ablation)?
        lpips_weights   = None,     # Local VGG16 weights for LPIPS, or 'random'; None = LPIPS off.
        id_weights      = None,     # Local ArcFace / MoCo-v2 weights; None = ID loss off.
        id_domain       = 'auto',   # 'face' (ArcFace), 'moco', or 'auto' (from the file's keys).
        requested_weights = None,   # {l2, lpips, id} the user asked for (recorded; a term that is off is warned about).
    ):
        super().__init__()
        assert encoder is not None, 'GradStyleLoss needs the encoder (extra module "encoder")'
        if getattr(D, 'c_dim', 0) != 0:
            raise dnnlib.UserError('--network: GradStyle fine-tunes an unconditional discriminator; this D has c_dim > 0')
        self.device = device
        self.G = dnnlib.EasyDict(synthesis=G_synthesis)    # streams.* only use G.synthesis
        self.G_mapping = G_mapping
        self.D = D
        self.encoder = encoder
        asked = dnnlib.EasyDict(l2=l2_weight, lpips=lpips_weight, id=id_weight)
        asked.update(requested_weights or {})
        for note in image_losses.effective_weights(asked.l2, asked.lpips, asked.id, lpips_weights, id_weights)[1]:
            _warn_rank0(note)           # loud, at the start of the run's log
        eff, _notes = image_losses.effective_weights(l2_weight, lpips_weight, id_weight, lpips_weights, id_weights)
        self.weights = dnnlib.EasyDict(l2=eff.l2, lpips=eff.lpips, id=eff.id, adv=adv_weight, f=f_weight, aligner=aligner_weight)
        self.r1_gamma = r1_gamma
        self.edit_trains_gate = bool(edit_trains_gate)
        from gradstyle_plugin import perceptual
        lpips_net = perceptual.build_lpips(lpips_weights).to(device) if eff.lpips != 0 else None
        id_net = perceptual.build_id_loss(id_weights, domain=id_domain).to(device) if eff.id != 0 else None
        self.loss_res = image_losses.resolve_loss_resolution(loss_res, G_synthesis.img_resolution)
        self.image_losses = image_losses.ImageLosses(self.loss_res, l2_weight=eff.l2, lpips_weight=eff.lpips, id_weight=eff.id,
            lpips_net=lpips_net, id_net=id_net)
        self.transform = None
        if perspective > 0 and perspective_p > 0:
            self.transform = transforms.RandomPerspective(perspective, p=perspective_p, mode=perspective_mode)

    def run_streams(self, real_img, transform=True):
        return streams.run_streams(self.G, self.encoder, real_img, transform=(self.transform if transform else None),
            detach_residuals=True, edit_trains_gate=self.edit_trains_gate)

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain):
        assert phase in ['Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth'], f'unknown phase {phase!r}'
        if phase in ['Gmain', 'Gboth']:
            self._accumulate_G(real_img, gain)
        if phase in ['Dmain', 'Dboth']:
            self._accumulate_Dmain(real_img, gain)
        if phase in ['Dreg', 'Dboth'] and self.r1_gamma != 0:
            self._accumulate_Dr1(real_img, gain)

    def image_terms(self, prefix, x, real_img):
        """Weighted L2 + LPIPS + ID (at the loss resolution) + adversarial terms of one stream's output, per sample [N]."""
        total = self.image_losses(x, real_img, prefix=prefix)
        if self.weights.adv != 0:
            logits = self.D(x, self._d_labels(x))
            total = total + self.weights.adv * training_stats.report(f'Loss/{prefix}/adv', torch.nn.functional.softplus(-logits).flatten())
        return total

    def G_loss(self, real_img, out=None):
        """The total G loss per sample [N] (eq. 15); `out` = the StreamOutputs to use (default: run them here)."""
        out = self.run_streams(real_img) if out is None else out
        loss = self.image_terms('rec', out.img_rec, real_img) + self.image_terms('edit', out.img_edit, real_img)
        loss_f = training_stats.report('Loss/L_f', stage_l1(out.fused_rec))
        loss_aligner = training_stats.report('Loss/aligner', stage_l1({s: out.aligned[s] - out.residuals[s].detach() for s in out.aligned}))
        return loss + self.weights.f * loss_f + self.weights.aligner * loss_aligner

    def _accumulate_G(self, real_img, gain):
        with torch.autograd.profiler.record_function('GradStyle_forward'):
            loss = training_stats.report('Loss/G/loss', self.G_loss(real_img))
        with torch.autograd.profiler.record_function('GradStyle_backward'):
            loss.mean().mul(gain).backward()

    def _d_labels(self, img):
        return torch.zeros([img.shape[0], 0], device=img.device)

    def _accumulate_Dmain(self, real_img, gain):
        with torch.autograd.profiler.record_function('Dgen_forward'):
            with torch.no_grad():
                out = self.run_streams(real_img)
            fakes = torch.cat([out.img_rec, out.img_edit])
            gen_logits = self.D(fakes, self._d_labels(fakes))
            training_stats.report('Loss/scores/fake', gen_logits)
            loss_Dgen = torch.nn.functional.softplus(gen_logits)
            real_logits = self.D(real_img.detach(), self._d_labels(real_img))
            training_stats.report('Loss/scores/real', real_logits)
            loss_Dreal = torch.nn.functional.softplus(-real_logits)
            training_stats.report('Loss/D/loss', loss_Dreal + loss_Dgen.reshape(2, -1, 1).mean(0))
        with torch.autograd.profiler.record_function('Dgen_backward'):
            (loss_Dgen.mean() + loss_Dreal.mean()).mul(gain).backward()

    def _accumulate_Dr1(self, real_img, gain):
        with torch.autograd.profiler.record_function('Dr1_forward'):
            real = real_img.detach().requires_grad_(True)
            real_logits = self.D(real, self._d_labels(real))
            with conv2d_gradfix.no_weight_gradients():
                r1_grads = torch.autograd.grad(outputs=[real_logits.sum()], inputs=[real], create_graph=True, only_inputs=True)[0]
            r1_penalty = r1_grads.square().sum([1, 2, 3])
            training_stats.report('Loss/r1_penalty', r1_penalty)
            loss_Dr1 = r1_penalty * (self.r1_gamma / 2)
            training_stats.report('Loss/D/reg', loss_Dr1)
        with torch.autograd.profiler.record_function('Dr1_backward'):
            (real_logits * 0 + loss_Dr1[:, None]).mean().mul(gain).backward()

def _warn_rank0(note):
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()) or torch.distributed.get_rank() == 0:
        print(note, flush=True)

#----------------------------------------------------------------------------
