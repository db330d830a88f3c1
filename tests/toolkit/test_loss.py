"""StyleGAN2Loss: R1 and path-length gradients against finite differences on tiny networks.

The regularisers are gradients of gradients; what the loss backpropagates into the parameters
needs double backward through every op. The reference here needs first-order autograd only:
the penalty is evaluated as a function of the parameters and differentiated numerically along a
random direction (central differences), compared with the directional derivative of the
gradients the loss accumulated.

G runs in training mode as in the loop: with fused modulation the conv weight depends on ws, and
`no_weight_gradients` (which the toolkit's path-length term uses) would drop part of dL/dws.

lrelu makes the penalty piecewise smooth: a finite difference that flips the sign of one of the
~10^5 pre-activations measures a jump, not a derivative. The networks here therefore use a
smooth activation (swish); the code path (conv2d_resample, upfirdn2d, bias_act, fma,
minibatch-std, modulation) is the same, and lrelu's own second-order rule is checked in
test_ops.py with gradgradcheck.
"""

import numpy as np
import pytest
import torch

from stylegan2_ada_pytorch.testing import tiny_discriminator, tiny_generator
from stylegan2_ada_pytorch.torch_utils.ops import conv2d_gradfix
from stylegan2_ada_pytorch.training.loss import StyleGAN2Loss

#----------------------------------------------------------------------------

def _directional_fd(fn, params, direction, eps):
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.add_(d, alpha=eps)
        plus = float(fn())
        for p, d in zip(params, direction):
            p.add_(d, alpha=-2 * eps)
        minus = float(fn())
        for p, d in zip(params, direction):
            p.add_(d, alpha=eps)
    return (plus - minus) / (2 * eps)

def _accumulated_directional(params, direction):
    return sum(float((p.grad * d).sum()) for p, d in zip(params, direction))

def _random_direction(params, seed):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(p.shape, generator=gen) for p in params]

#----------------------------------------------------------------------------

SMOOTH_D = dict(block_kwargs=dict(activation='swish'), epilogue_kwargs=dict(mbstd_group_size=2, activation='swish'))
SMOOTH_G = dict(mapping_kwargs=dict(activation='swish'), synthesis_kwargs=dict(activation='swish'))

@pytest.fixture(autouse=True, params=[False, True], ids=['gradfix_off', 'gradfix_on'])
def _gradfix(request, monkeypatch):
    # The training loop turns conv2d_gradfix on; the regularisers must be right both ways.
    monkeypatch.setattr(conv2d_gradfix, 'enabled', request.param)

def test_r1_gradient_matches_finite_differences():
    G, D = tiny_generator(), tiny_discriminator(**SMOOTH_D)
    D.requires_grad_(True)
    params = [p for p in D.parameters()]
    gamma = 3.0
    loss = StyleGAN2Loss(device='cpu', G_mapping=G.mapping, G_synthesis=G.synthesis, D=D, r1_gamma=gamma, pl_weight=0)
    real = torch.randn([4, 3, 32, 32])
    c = torch.zeros([4, 0])

    def r1_loss():
        # First-order autograd only: |grad_x sum D(x)|^2 per sample, times gamma / 2, mean.
        with torch.enable_grad():
            x = real.clone().requires_grad_(True)
            g, = torch.autograd.grad(D(x, c).sum(), x)
        return (g.square().sum([1, 2, 3]) * gamma / 2).mean()

    loss.accumulate_gradients('Dreg', real_img=real, real_c=c, gen_z=None, gen_c=None, sync=True, gain=1)
    direction = _random_direction(params, seed=1)
    analytic = _accumulated_directional(params, direction)
    numeric = _directional_fd(r1_loss, params, direction, eps=1e-3)
    print(f'R1 directional derivative: accumulated {analytic:.6g}, finite differences {numeric:.6g}')
    assert abs(analytic) > 1e-3
    assert analytic == pytest.approx(numeric, rel=2e-2), (analytic, numeric)

def test_path_length_gradient_matches_finite_differences():
    G, D = tiny_generator(**SMOOTH_G), tiny_discriminator()
    G.requires_grad_(True)
    G.synthesis.train()   # as in training: non-fused modulation, so the conv weight does not depend on ws
    params = [p for name, p in G.named_parameters() if name.startswith('synthesis.')]
    pl_weight, pl_decay = 2.0, 0.5
    loss = StyleGAN2Loss(device='cpu', G_mapping=G.mapping, G_synthesis=G.synthesis, D=D, style_mixing_prob=0,
        pl_weight=pl_weight, pl_decay=pl_decay, pl_batch_shrink=1)
    z = torch.randn([4, G.z_dim])
    c = torch.zeros([4, 0])
    ws = G.mapping(z, c, skip_w_avg_update=True).detach()

    def pl_loss():
        # Same noise draws as the loss (seeded), first-order autograd only.
        torch.manual_seed(123)
        with torch.enable_grad():
            w = ws.clone().requires_grad_(True)
            img = G.synthesis(w)
            noise = torch.randn_like(img) / np.sqrt(img.shape[2] * img.shape[3])
            g, = torch.autograd.grad((img * noise).sum(), w)
        lengths = g.square().sum(2).mean(1).sqrt()
        pl_mean = 0 + pl_decay * (lengths.mean() - 0)   # lerp from the initial pl_mean = 0
        return ((lengths - pl_mean).square() * pl_weight).mean()

    # Feed the loss the same ws and noise: mapping is deterministic, synthesis noise is seeded.
    torch.manual_seed(123)
    class _FixedMapping(torch.nn.Module):
        def forward(self, z, c, **kwargs):
            return ws.clone()
    loss.G_mapping = _FixedMapping()
    loss.accumulate_gradients('Greg', real_img=None, real_c=None, gen_z=z, gen_c=c, sync=True, gain=1)
    direction = _random_direction(params, seed=2)
    analytic = _accumulated_directional(params, direction)
    numeric = _directional_fd(pl_loss, params, direction, eps=1e-3)
    print(f'PL directional derivative: accumulated {analytic:.6g}, finite differences {numeric:.6g}')
    assert abs(analytic) > 1e-3
    assert analytic == pytest.approx(numeric, rel=3e-2), (analytic, numeric)
    assert float(loss.pl_mean) > 0  # the running mean moved

def test_loss_state_round_trip():
    G, D = tiny_generator(), tiny_discriminator()
    loss = StyleGAN2Loss(device='cpu', G_mapping=G.mapping, G_synthesis=G.synthesis, D=D)
    loss.pl_mean.fill_(1.25)
    other = StyleGAN2Loss(device='cpu', G_mapping=G.mapping, G_synthesis=G.synthesis, D=D)
    other.load_state_dict(loss.state_dict())
    assert float(other.pl_mean) == 1.25

def test_unknown_phase_refused():
    G, D = tiny_generator(), tiny_discriminator()
    loss = StyleGAN2Loss(device='cpu', G_mapping=G.mapping, G_synthesis=G.synthesis, D=D)
    with pytest.raises(AssertionError, match='unknown phase'):
        loss.accumulate_gradients('Gfoo', None, None, None, None, True, 1)

#----------------------------------------------------------------------------
