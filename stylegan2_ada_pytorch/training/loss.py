"""Losses of "Analyzing and Improving the Image Quality of StyleGAN" (Karras et al., CVPR 2020),
as trained by "Training Generative Adversarial Networks with Limited Data" (Karras et al., 2020).

Non-saturating logistic loss, lazy R1 regularisation of D on reals (section 2.2 / appendix of
StyleGAN2), path-length regularisation of G (section 3.2) and style mixing. `Loss` is the
interface the training loop calls; plugins subclass it (`class_name` in `loss_kwargs`).

Shape letters: N batch, C channels, H/W image size, L number of ws (num_ws), D w_dim.
"""

import abc

import numpy as np
import torch

from ..torch_utils import training_stats
from ..torch_utils import misc
from ..torch_utils.ops import conv2d_gradfix

#----------------------------------------------------------------------------

class Loss(abc.ABC):
    """The training loop's loss interface.

    `accumulate_gradients` is called once per phase and batch chunk; it runs backward() itself
    (scaled by `gain`, the phase interval) and reports statistics through training_stats.

    Phases: 'Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth' for the toolkit's StyleGAN2 loss;
    subclasses may define their own phase names (the loop passes whatever its config lists).
    """

    @abc.abstractmethod
    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain):
        """Run forward + backward for `phase` on one batch chunk, gradients scaled by `gain`."""

    def state_dict(self):
        """Plain-data state a resumed run needs (e.g. running means); stored in snapshots."""
        return {}

    def load_state_dict(self, state):
        """Restore what state_dict() returned."""
        assert isinstance(state, dict)

#----------------------------------------------------------------------------

class StyleGAN2Loss(Loss):
    def __init__(self, device, G_mapping, G_synthesis, D,
        augment_pipe        = None,     # Augmentation applied to every image D sees (ADA), or None.
        style_mixing_prob   = 0.9,      # Probability of mixing two latents at a random crossover.
        r1_gamma            = 10,       # R1 regularisation weight (gamma); 0 disables.
        pl_batch_shrink     = 2,        # Path-length regularisation uses N // pl_batch_shrink samples.
        pl_decay            = 0.01,     # Decay of the running mean path length.
        pl_weight           = 2,        # Path-length regularisation weight; 0 disables.
    ):
        super().__init__()
        self.device = device
        self.G_mapping = G_mapping
        self.G_synthesis = G_synthesis
        self.D = D
        self.augment_pipe = augment_pipe
        self.style_mixing_prob = style_mixing_prob
        self.r1_gamma = r1_gamma
        self.pl_batch_shrink = pl_batch_shrink
        self.pl_decay = pl_decay
        self.pl_weight = pl_weight
        self.pl_mean = torch.zeros([], device=device)
        self._pending_Dgen = None   # Fake-image D loss of the current Dmain step, for the Loss/D/loss report.

    def state_dict(self):
        return dict(pl_mean=self.pl_mean.detach().cpu().clone())

    def load_state_dict(self, state):
        self.pl_mean.copy_(torch.as_tensor(state['pl_mean']).to(self.pl_mean.device))

    def run_G(self, z, c, sync, need_ws_grad=False):
        with misc.ddp_sync(self.G_mapping, sync):
            ws = self.G_mapping(z, c)                                           # [NLD]
            if need_ws_grad and not ws.requires_grad:
                ws = ws.detach().requires_grad_(True)   # frozen mapping: differentiate w.r.t. ws itself
            if self.style_mixing_prob > 0:
                with torch.autograd.profiler.record_function('style_mixing'):
                    num_ws = ws.shape[1]
                    cutoff = torch.empty([], dtype=torch.int64, device=ws.device).random_(1, num_ws)
                    keep_all = torch.rand([], device=ws.device) >= self.style_mixing_prob
                    cutoff = torch.where(keep_all, torch.full_like(cutoff, num_ws), cutoff)
                    mixed = self.G_mapping(torch.randn_like(z), c, skip_w_avg_update=True)
                    layer = torch.arange(num_ws, device=ws.device)[None, :, None]
                    ws = torch.where(layer < cutoff, ws, mixed)
        with misc.ddp_sync(self.G_synthesis, sync):
            img = self.G_synthesis(ws)                                          # [NCHW]
        return img, ws

    def run_D(self, img, c, sync):
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        with misc.ddp_sync(self.D, sync):
            logits = self.D(img, c)                                             # [N1]
        return logits

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain):
        assert phase in ['Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth'], f'unknown phase {phase!r}'
        do_Gmain = phase in ['Gmain', 'Gboth']
        do_Dmain = phase in ['Dmain', 'Dboth']
        do_Gpl = phase in ['Greg', 'Gboth'] and self.pl_weight != 0
        do_Dr1 = phase in ['Dreg', 'Dboth'] and self.r1_gamma != 0

        if do_Gmain:
            self._accumulate_Gmain(gen_z, gen_c, sync=(sync and not do_Gpl), gain=gain)
        if do_Gpl:
            self._accumulate_Gpl(gen_z, gen_c, sync=sync, gain=gain)
        if do_Dmain:
            self._accumulate_Dgen(gen_z, gen_c, gain=gain)
        if do_Dmain or do_Dr1:
            self._accumulate_Dreal(real_img, real_c, sync=sync, gain=gain, do_Dmain=do_Dmain, do_Dr1=do_Dr1)

    # G: make D call fakes real. softplus(-D(G(z))) is the non-saturating logistic loss.
    def _accumulate_Gmain(self, gen_z, gen_c, sync, gain):
        with torch.autograd.profiler.record_function('Gmain_forward'):
            gen_img, _gen_ws = self.run_G(gen_z, gen_c, sync=sync)
            gen_logits = self.run_D(gen_img, gen_c, sync=False)
            training_stats.report('Loss/scores/fake', gen_logits)
            training_stats.report('Loss/signs/fake', gen_logits.sign())
            loss_Gmain = torch.nn.functional.softplus(-gen_logits)
            training_stats.report('Loss/G/loss', loss_Gmain)
        with torch.autograd.profiler.record_function('Gmain_backward'):
            loss_Gmain.mean().mul(gain).backward()

    # G: path-length regularisation, E[(|J^T y| - a)^2] with y ~ N(0, I) / sqrt(H*W).
    def _accumulate_Gpl(self, gen_z, gen_c, sync, gain):
        with torch.autograd.profiler.record_function('Gpl_forward'):
            batch_size = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
            gen_img, gen_ws = self.run_G(gen_z[:batch_size], gen_c[:batch_size], sync=sync, need_ws_grad=True)
            pl_noise = torch.randn_like(gen_img) / np.sqrt(gen_img.shape[2] * gen_img.shape[3])
            with torch.autograd.profiler.record_function('pl_grads'), conv2d_gradfix.no_weight_gradients():
                pl_grads = torch.autograd.grad(outputs=[(gen_img * pl_noise).sum()], inputs=[gen_ws],
                    create_graph=True, only_inputs=True)[0]                     # [NLD]
            pl_lengths = pl_grads.square().sum(2).mean(1).sqrt()                # [N]
            pl_mean = self.pl_mean.lerp(pl_lengths.mean(), self.pl_decay)
            self.pl_mean.copy_(pl_mean.detach())
            pl_penalty = (pl_lengths - pl_mean).square()
            training_stats.report('Loss/pl_penalty', pl_penalty)
            loss_Gpl = pl_penalty * self.pl_weight
            training_stats.report('Loss/G/reg', loss_Gpl)
        with torch.autograd.profiler.record_function('Gpl_backward'):
            (gen_img[:, 0, 0, 0] * 0 + loss_Gpl).mean().mul(gain).backward()

    # D: push fakes down. softplus(D(G(z))).
    def _accumulate_Dgen(self, gen_z, gen_c, gain):
        with torch.autograd.profiler.record_function('Dgen_forward'):
            gen_img, _gen_ws = self.run_G(gen_z, gen_c, sync=False)
            gen_logits = self.run_D(gen_img, gen_c, sync=False)  # G's gradient sync happens in Gmain.
            training_stats.report('Loss/scores/fake', gen_logits)
            training_stats.report('Loss/signs/fake', gen_logits.sign())
            loss_Dgen = torch.nn.functional.softplus(gen_logits)
            self._pending_Dgen = loss_Dgen.detach()
        with torch.autograd.profiler.record_function('Dgen_backward'):
            loss_Dgen.mean().mul(gain).backward()

    # D: pull reals up, softplus(-D(x)), and/or R1: gamma/2 * |grad_x D(x)|^2.
    def _accumulate_Dreal(self, real_img, real_c, sync, gain, do_Dmain, do_Dr1):
        name = 'Dreal_Dr1' if do_Dmain and do_Dr1 else 'Dreal' if do_Dmain else 'Dr1'
        with torch.autograd.profiler.record_function(name + '_forward'):
            real_img_tmp = real_img.detach().requires_grad_(do_Dr1)
            real_logits = self.run_D(real_img_tmp, real_c, sync=sync)
            training_stats.report('Loss/scores/real', real_logits)
            training_stats.report('Loss/signs/real', real_logits.sign())

            loss_Dreal = 0
            if do_Dmain:
                loss_Dreal = torch.nn.functional.softplus(-real_logits)
                fake_term, self._pending_Dgen = self._pending_Dgen, None
                training_stats.report('Loss/D/loss', loss_Dreal if fake_term is None else loss_Dreal + fake_term)

            loss_Dr1 = 0
            if do_Dr1:
                with torch.autograd.profiler.record_function('r1_grads'), conv2d_gradfix.no_weight_gradients():
                    r1_grads = torch.autograd.grad(outputs=[real_logits.sum()], inputs=[real_img_tmp],
                        create_graph=True, only_inputs=True)[0]                 # [NCHW]
                r1_penalty = r1_grads.square().sum([1, 2, 3])
                loss_Dr1 = r1_penalty * (self.r1_gamma / 2)
                training_stats.report('Loss/r1_penalty', r1_penalty)
                training_stats.report('Loss/D/reg', loss_Dr1)
        with torch.autograd.profiler.record_function(name + '_backward'):
            (real_logits * 0 + loss_Dreal + loss_Dr1).mean().mul(gain).backward()

#----------------------------------------------------------------------------
