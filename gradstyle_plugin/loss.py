"""GradStyle's self-supervised training objective (section 3.4, eq. 10-15) on the toolkit's Loss API.

The editing stream runs with alpha = 0, and the residuals it aligns are the reconstruction
stream's F_m, detached (so the GRMs learn from the reconstruction losses only) and warped by one
random perspective per sample (the misaligned pairs {F^_m, f_m^edi} with F_m as ground truth).

    L = sum over streams s in {rec, edit} of
            l2 * |X - X_s|^2 + lpips * LPIPS(X, X_s) + id * (1 - cos(ID(X), ID(X_s))) + adv * softplus(-D(X_s))
        + f * sum_m |g_m F_m|_1                      (eq. 5, reconstruction stream)
        + aligner * sum_m |F'_m - F_m|_1             (eq. 10)

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
from gradstyle_plugin import streams

#----------------------------------------------------------------------------

class GradStyleLoss(Loss):
    def __init__(self, device, G_mapping, G_synthesis, D, augment_pipe=None, encoder=None,
        l2_weight       = 1.0,      # lambda of the L2 terms (eq. 11; e4e's value).
        lpips_weight    = 0.8,      # lambda_lpips (e4e's value).
        id_weight       = 0.1,      # lambda_id (e4e's value for faces); 0 or id_weights=None turns it off.
        adv_weight      = 0.1,      # lambda_adv (ours: the paper's appendix value is not available).
        f_weight        = 0.01,     # lambda_f of the gate regulariser L_f (ours).
        aligner_weight  = 1.0,      # lambda_aligner (ours).
        r1_gamma        = 10,       # R1 weight when fine-tuning D.
        perspective     = 0.3,      # Strength of the random perspective applied to the residuals.
        lpips_weights   = None,     # Local VGG16 weights for LPIPS, or 'random'; None = LPIPS off.
        id_weights      = None,     # Local ArcFace / MoCo-v2 weights; None = ID loss off.
        id_domain       = 'auto',   # 'face' (ArcFace), 'moco', or 'auto' (from the file's keys).
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
        self.weights = dnnlib.EasyDict(l2=l2_weight, lpips=lpips_weight, id=id_weight, adv=adv_weight, f=f_weight, aligner=aligner_weight)
        self.r1_gamma = r1_gamma
        self.perspective = perspective
        self.lpips = None
        self.id_loss = None
        from gradstyle_plugin import perceptual, transforms
        if lpips_weights is not None and lpips_weight != 0:
            self.lpips = perceptual.build_lpips(lpips_weights).to(device)
        if id_weights is not None and id_weight != 0:
            self.id_loss = perceptual.build_id_loss(id_weights, domain=id_domain).to(device)
        self.transform = transforms.RandomPerspective(perspective) if perspective > 0 else None

    def run_streams(self, real_img, transform=True):
        return streams.run_streams(self.G, self.encoder, real_img, transform=(self.transform if transform else None),
            detach_residuals=True)

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain):
        assert phase in ['Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth'], f'unknown phase {phase!r}'
        if phase in ['Gmain', 'Gboth']:
            self._accumulate_G(real_img, gain)
        if phase in ['Dmain', 'Dboth']:
            self._accumulate_Dmain(real_img, gain)
        if phase in ['Dreg', 'Dboth'] and self.r1_gamma != 0:
            self._accumulate_Dr1(real_img, gain)

    def image_terms(self, prefix, x, real_img):
        """Weighted L2 + LPIPS + ID + adversarial terms of one stream's output, per sample [N]."""
        w = self.weights
        l2 = (x - real_img).square().mean([1, 2, 3])
        total = w.l2 * training_stats.report(f'Loss/{prefix}/l2', l2)
        if self.lpips is not None:
            total = total + w.lpips * training_stats.report(f'Loss/{prefix}/lpips', self.lpips(x, real_img).flatten())
        if self.id_loss is not None:
            total = total + w.id * training_stats.report(f'Loss/{prefix}/id', self.id_loss(x, real_img))
        if w.adv != 0:
            logits = self.D(x, self._d_labels(x))
            total = total + w.adv * training_stats.report(f'Loss/{prefix}/adv', torch.nn.functional.softplus(-logits).flatten())
        return total

    def _accumulate_G(self, real_img, gain):
        with torch.autograd.profiler.record_function('GradStyle_forward'):
            out = self.run_streams(real_img)
            loss = self.image_terms('rec', out.img_rec, real_img) + self.image_terms('edit', out.img_edit, real_img)
            loss_f = sum(gF.abs().mean([1, 2, 3]) for gF in out.fused_rec.values())
            loss_aligner = sum((out.aligned[s] - out.residuals[s].detach()).abs().mean([1, 2, 3]) for s in out.aligned)
            training_stats.report('Loss/L_f', loss_f)
            training_stats.report('Loss/aligner', loss_aligner)
            loss = loss + self.weights.f * loss_f + self.weights.aligner * loss_aligner
            training_stats.report('Loss/G/loss', loss)
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

#----------------------------------------------------------------------------
