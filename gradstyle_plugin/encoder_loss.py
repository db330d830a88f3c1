"""e4e's encoder-training objective (Tov et al. 2021, "Designing an Encoder for StyleGAN Image
Manipulation", sections 4.2-4.3 and appendix) on the toolkit's Loss API.

The encoder E maps an image x to W+ = latent_avg + [w, w + delta_1, ..., w + delta_{L-1}]
(`encoder.E4EEncoder`); the frozen generator renders y = G.synthesis(W+). With k the progressive
stage (only delta_1..delta_k are in use):

    L_E  = l2 * |x - y|^2 + lpips * LPIPS(x, y) + id * (1 - cos(ID(x), ID(y)))     (at loss_res)
         + delta * sum_{i=1..k} |W+_i - W+_0|_2                                   (delta regularisation)
         + adv * mean_{i=0..k} softplus(-D_W(W+_i))                               (latent discriminator)
    L_DW = softplus(-D_W(w_real)) + mean_{i=0..k} softplus(D_W(W+_i)),  w_real = G.mapping(z)
         + gamma / 2 * |grad_w D_W(w_real)|^2                                     (R1, lazy)

Progressive training (`progressive_stage`): stage 0 (w only) for the first `progressive_start`
images, then one more delta row every `progressive_step` images. Phases: 'encoderboth' trains E;
'latent_Dmain' / 'latent_Dreg' (or 'latent_Dboth') train D_W. G (mapping and synthesis) receives no
gradient and its w_avg is not updated. Ours (e4e's code does it differently): D_W sees the rows
0..k of W+ with latent_avg included in both of its phases (e4e's discriminator step feeds row 0
without latent_avg).

Shape letters: N batch, L W+ rows (num_ws), D w_dim.
"""

import contextlib

import torch

from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch.torch_utils import training_stats
from stylegan2_ada_pytorch.training.loss import Loss
from gradstyle_plugin import image_losses

#----------------------------------------------------------------------------

def progressive_stage(nimg, num_ws, start, step):
    """Delta rows in use after `nimg` images: 0 before `start`, then +1 every `step` images (max num_ws - 1).

    `start` None = no progressive training (all rows from the start, e4e's `progressive_start` unset).

    Example:
        >>> [progressive_stage(n, 8, start=100, step=10) for n in (0, 99, 100, 110, 1000)]
        [0, 0, 1, 2, 7]
    """
    if start is None:
        return num_ws - 1
    if nimg < start:
        return 0
    return int(min(num_ws - 1, 1 + (nimg - start) // max(int(step), 1)))

@contextlib.contextmanager
def progressive(encoder, stage):
    """Run the block with `encoder` using delta rows 1..stage only; its own setting is restored after.

    (A snapshot taken between steps holds the encoder as built, every row in use; rows not trained
    yet give delta 0 when their map2style linear layers start at zero, see `zero_deltas`.)
    """
    saved = encoder.progressive_stage
    encoder.set_progressive_stage(stage)
    try:
        yield encoder
    finally:
        encoder.progressive_stage = saved

@torch.no_grad()
def zero_deltas(encoder, first=1):
    """Zero the map2style linear layers of rows first..L-1: those rows start with delta 0 (ours)."""
    for idx in range(first, encoder.num_ws):
        encoder.styles[idx].linear.weight.zero_()
        if encoder.styles[idx].linear.bias is not None:
            encoder.styles[idx].linear.bias.zero_()

def delta_regularisation(ws, stage):
    """sum_{i=1..stage} |ws[:, i] - ws[:, 0]|_2 per sample [N] (e4e's delta_norm 2)."""
    if stage == 0:
        return ws.new_zeros([ws.shape[0]])
    deltas = ws[:, 1:stage + 1] - ws[:, :1]                                     # [N, stage, D]
    return deltas.norm(p=2, dim=2).sum(dim=1)

def latent_logits(latent_D, ws, stage):
    """Logits [N, stage + 1] of the rows 0..stage of ws [N, L, D]."""
    rows = ws[:, :stage + 1]
    return latent_D(rows.reshape(-1, rows.shape[-1])).reshape(ws.shape[0], stage + 1)

def r1_penalty(latent_D, w_real):
    """|grad_w sum D_W(w)|^2 per sample [N] on detached real codes; returns (penalty, logits)."""
    w = w_real.detach().requires_grad_(True)
    logits = latent_D(w)
    grads = torch.autograd.grad(outputs=[logits.sum()], inputs=[w], create_graph=True, only_inputs=True)[0]
    return grads.square().sum(dim=1), logits

class LatentPool:
    """e4e's optional pool of past codes for the latent discriminator (an image-pool of w's).

    `query(w)` [M, D] -> [M, D]: while the pool holds fewer than `size` codes, each code is stored
    and returned as is; afterwards, with probability 1/2 a code swaps with a random stored one (the
    stored one is returned), else it is returned as is. Draws from torch's global RNG (saved in
    training_state), and `state_dict()` holds the stored codes, so a resumed run continues exactly.
    """

    def __init__(self, size):
        self.size = int(size)
        self.codes = []

    def query(self, w):
        if self.size == 0:
            return w
        out = []
        for code in w.detach():
            if len(self.codes) < self.size:
                self.codes.append(code.clone())
                out.append(code)
            elif float(torch.rand([])) > 0.5:
                idx = int(torch.randint(self.size, []))
                out.append(self.codes[idx])
                self.codes[idx] = code.clone()
            else:
                out.append(code)
        return torch.stack(out)

    def state_dict(self):
        return dict(codes=[code.detach().cpu().clone() for code in self.codes])

    def load_state_dict(self, state, device):
        self.codes = [torch.as_tensor(code).to(device) for code in state['codes']]

def _world_size():
    dist = torch.distributed
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

def sync_running_stats(module):
    """Average BatchNorm running statistics over processes (so every process snapshots the same encoder)."""
    if _world_size() == 1:
        return
    for name, buf in module.named_buffers():
        if name.endswith('running_mean') or name.endswith('running_var'):
            torch.distributed.all_reduce(buf)
            buf /= _world_size()

#----------------------------------------------------------------------------

class E4EEncoderLoss(Loss):
    def __init__(self, device, G_mapping, G_synthesis, D, augment_pipe=None, encoder=None, latent_D=None,
        l2_weight           = 1.0,      # lambda_l2 (e4e: 1.0).
        lpips_weight        = 0.8,      # lambda_lpips (e4e: 0.8); applies only with lpips_weights.
        id_weight           = 0.1,      # lambda_id (e4e: 0.1); applies only with id_weights.
        adv_weight          = 0.1,      # lambda of the latent-discriminator term (e4e: w_discriminator_lambda 0.1).
        delta_weight        = 2e-4,     # lambda of the delta regularisation (e4e: delta_norm_lambda 2e-4).
        r1_gamma            = 10,       # R1 weight of the latent discriminator (e4e: 10).
        progressive_start   = 0,        # Images before delta row 1 is used; None = all rows from the start.
        progressive_step    = 1000,     # Images between two more delta rows.
        w_pool              = 0,        # Codes kept for the latent discriminator (e4e: 50 with --use_w_pool); 0 = off.
        loss_res            = None,     # Resolution of the image terms; None = the encoder's input resolution (e4e: 256).
        noise_mode          = 'random', # Noise of G while training (e4e: randomize_noise, 'random').
        lpips_weights       = None,     # Local VGG16 weights for LPIPS, or 'random'; None = LPIPS off.
        id_weights          = None,     # Local ArcFace / MoCo-v2 weights; None = ID off.
        id_domain           = 'auto',   # 'face', 'moco' or 'auto'.
        requested_weights   = None,     # {l2, lpips, id} the user asked for; a term that is off is warned about in the log.
    ):
        super().__init__()
        assert encoder is not None and latent_D is not None, 'E4EEncoderLoss needs the extra modules "encoder" and "latent_D"'
        from gradstyle_plugin import perceptual
        from gradstyle_plugin.loss import _warn_rank0
        asked = dict(dict(l2=l2_weight, lpips=lpips_weight, id=id_weight), **(requested_weights or {}))
        for note in image_losses.effective_weights(asked['l2'], asked['lpips'], asked['id'], lpips_weights, id_weights)[1]:
            _warn_rank0(note)           # loud, at the start of the run's log
        self.device = device
        self.G_mapping = G_mapping
        self.G_synthesis = G_synthesis
        self.encoder = encoder.train()   # e4e trains with BatchNorm in training mode
        self.latent_D = latent_D
        self.weights = dnnlib.EasyDict(adv=float(adv_weight), delta=float(delta_weight))
        self.r1_gamma = float(r1_gamma)
        self.progressive_start = progressive_start
        self.progressive_step = progressive_step
        self.noise_mode = noise_mode
        self.nimg = 0                    # encoder-phase images seen (all processes): the progressive clock
        self.pools = dnnlib.EasyDict(real=LatentPool(w_pool), fake=LatentPool(w_pool))
        self.loss_res = image_losses.resolve_loss_resolution(encoder.img_resolution if loss_res is None else loss_res,
            G_synthesis.img_resolution)
        lpips_net = perceptual.build_lpips(lpips_weights).to(device) if lpips_weight != 0 and lpips_weights else None
        id_net = perceptual.build_id_loss(id_weights, domain=id_domain).to(device) if id_weight != 0 and id_weights else None
        self.image_losses = image_losses.ImageLosses(self.loss_res, l2_weight=l2_weight, lpips_weight=lpips_weight,
            id_weight=id_weight, lpips_net=lpips_net, id_net=id_net)

    def state_dict(self):
        return dict(nimg=int(self.nimg), pools={name: pool.state_dict() for name, pool in self.pools.items()})

    def load_state_dict(self, state):
        self.nimg = int(state['nimg'])
        for name, pool in self.pools.items():
            pool.load_state_dict(state.get('pools', {}).get(name, dict(codes=[])), self.device)

    def stage(self):
        return progressive_stage(self.nimg, self.encoder.num_ws, self.progressive_start, self.progressive_step)

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, sync, gain):
        assert phase in ['encoderboth', 'latent_Dmain', 'latent_Dreg', 'latent_Dboth'], f'unknown phase {phase!r}'
        with progressive(self.encoder, self.stage()):
            if phase == 'encoderboth':
                self._accumulate_E(real_img, gain)
                self.nimg += real_img.shape[0] * _world_size()
                if sync:
                    sync_running_stats(self.encoder)
            if phase in ['latent_Dmain', 'latent_Dboth'] and self.weights.adv != 0:
                self._accumulate_Dmain(real_img, gen_z, gen_c, gain)
            if phase in ['latent_Dreg', 'latent_Dboth'] and self.weights.adv != 0 and self.r1_gamma != 0:
                self._accumulate_Dr1(gen_z, gen_c, gain)

    def encoder_loss(self, real_img):
        """L_E per sample [N] (and the W+ codes [N, L, D] and reconstructions it came from), at the encoder's stage."""
        stage = self.encoder.progressive_stage
        ws, _feats = self.encoder(real_img)
        img = self.G_synthesis(ws, noise_mode=self.noise_mode)
        loss = self.image_losses(img, real_img, prefix='E')
        loss = loss + self.weights.delta * training_stats.report('Loss/E/delta', delta_regularisation(ws, stage))
        if self.weights.adv != 0:
            adv = torch.nn.functional.softplus(-latent_logits(self.latent_D, ws, stage)).mean(dim=1)
            loss = loss + self.weights.adv * training_stats.report('Loss/E/adv', adv)
        training_stats.report('Progress/progressive_stage', stage)
        return loss, ws, img

    def _accumulate_E(self, real_img, gain):
        with torch.autograd.profiler.record_function('E_forward'):
            loss = training_stats.report('Loss/E/loss', self.encoder_loss(real_img)[0])
        with torch.autograd.profiler.record_function('E_backward'):
            loss.mean().mul(gain).backward()

    def real_codes(self, gen_z, gen_c):
        """w = G.mapping(z) [N, D] (no w_avg update, no gradient into G)."""
        with torch.no_grad():
            return self.G_mapping(gen_z, gen_c, skip_w_avg_update=True)[:, 0]

    def _accumulate_Dmain(self, real_img, gen_z, gen_c, gain):
        with torch.autograd.profiler.record_function('latent_D_forward'):
            with torch.no_grad():
                ws, _feats = self.encoder(real_img)
                fake = ws[:, :self.encoder.progressive_stage + 1].flatten(0, 1)          # [N * (k + 1), D]
            fake_logits = self.latent_D(self.pools.fake.query(fake))
            real_logits = self.latent_D(self.pools.real.query(self.real_codes(gen_z, gen_c)))
            training_stats.report('Loss/latent_D/scores/fake', fake_logits)
            training_stats.report('Loss/latent_D/scores/real', real_logits)
            loss = torch.nn.functional.softplus(-real_logits).mean() + torch.nn.functional.softplus(fake_logits).mean()
            training_stats.report('Loss/latent_D/loss', loss)
        with torch.autograd.profiler.record_function('latent_D_backward'):
            loss.mean().mul(gain).backward()

    def _accumulate_Dr1(self, gen_z, gen_c, gain):
        with torch.autograd.profiler.record_function('latent_Dr1_forward'):
            penalty, logits = r1_penalty(self.latent_D, self.real_codes(gen_z, gen_c))
            training_stats.report('Loss/latent_D/r1_penalty', penalty)
            loss = penalty * (self.r1_gamma / 2)
        with torch.autograd.profiler.record_function('latent_Dr1_backward'):
            (logits[:, 0] * 0 + loss).mean().mul(gain).backward()

#----------------------------------------------------------------------------
