"""Tests for gradstyle_plugin/encoder_loss.py and latent_discriminator.py (e4e's training objective).

Every term is checked against an independent computation: the progressive schedule against e4e's
list of stage start steps, the delta regularisation and the latent-discriminator losses against
NumPy in float64 (the MLP evaluated by hand), R1 against the closed form of a linear
discriminator and against finite differences; gradient routing on a tiny generator.
"""

import numpy as np
import pytest
import torch

from stylegan2_ada_pytorch import dnnlib, testing
from gradstyle_plugin import encoder as encoder_module
from gradstyle_plugin import encoder_loss
from gradstyle_plugin.latent_discriminator import LatentDiscriminator

#----------------------------------------------------------------------------
# Progressive schedule.

def _e4e_stage(step, num_ws, start, every):
    # e4e: progressive_steps = [0, start, start + every, ...]; stage i from step progressive_steps[i] on.
    starts = [0] + [start + i * every for i in range(num_ws - 1)]
    return max(i for i, s in enumerate(starts) if step >= s)

@pytest.mark.parametrize('num_ws,start,every', [(8, 0, 5), (8, 20, 7), (18, 100, 10), (4, 3, 1)])
def test_progressive_stage_matches_e4e_steps(num_ws, start, every):
    for n in range(0, start + every * (num_ws + 2)):
        assert encoder_loss.progressive_stage(n, num_ws, start, every) == _e4e_stage(n, num_ws, start, every), n

def test_progressive_off_uses_all_rows():
    assert encoder_loss.progressive_stage(0, 14, None, 10) == 13

#----------------------------------------------------------------------------
# Delta regularisation.

@pytest.mark.parametrize('stage', [0, 1, 4, 7])
def test_delta_regularisation_matches_numpy(stage):
    ws = torch.randn([3, 8, 5], dtype=torch.float64)
    got = encoder_loss.delta_regularisation(ws, stage).numpy()
    w = ws.numpy()
    want = np.zeros(3)
    for n in range(3):
        for i in range(1, stage + 1):
            want[n] += np.sqrt(np.sum((w[n, i] - w[n, 0]) ** 2))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)

#----------------------------------------------------------------------------
# Latent discriminator.

def _np_mlp(latent_D, w):
    x = w
    layers = [m for m in latent_D.net if isinstance(m, torch.nn.Linear)]
    for idx, layer in enumerate(layers):
        x = x @ layer.weight.detach().double().numpy().T + layer.bias.detach().double().numpy()
        if idx < len(layers) - 1:
            x = np.where(x > 0, x, 0.2 * x)
    return x

def _softplus(x):
    return np.logaddexp(0, x)

def test_latent_discriminator_layout_is_e4e():
    D = LatentDiscriminator(w_dim=512)
    linears = [m for m in D.net if isinstance(m, torch.nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(512, 512)] * 3 + [(1, 512)]
    assert sum(isinstance(m, torch.nn.LeakyReLU) and m.negative_slope == 0.2 for m in D.net) == 3

def test_latent_D_losses_match_numpy():
    D = LatentDiscriminator(w_dim=6).double()
    ws = torch.randn([4, 5, 6], dtype=torch.float64)
    w_real = torch.randn([4, 6], dtype=torch.float64)
    stage = 2
    fake = encoder_loss.latent_logits(D, ws, stage)
    got_D = torch.nn.functional.softplus(-D(w_real)[:, 0]) + torch.nn.functional.softplus(fake).mean(dim=1)
    got_E = torch.nn.functional.softplus(-fake).mean(dim=1)
    fake_np = np.stack([_np_mlp(D, ws[:, i].numpy())[:, 0] for i in range(stage + 1)], axis=1)
    want_D = _softplus(-_np_mlp(D, w_real.numpy())[:, 0]) + _softplus(fake_np).mean(axis=1)
    np.testing.assert_allclose(got_D.detach().numpy(), want_D, rtol=1e-10)
    np.testing.assert_allclose(got_E.detach().numpy(), _softplus(-fake_np).mean(axis=1), rtol=1e-10)

def test_r1_linear_discriminator_closed_form():
    D = LatentDiscriminator(w_dim=7, num_layers=1).double()
    penalty, _logits = encoder_loss.r1_penalty(D, torch.randn([5, 7], dtype=torch.float64))
    a = D.net[0].weight.detach().numpy()[0]
    np.testing.assert_allclose(penalty.detach().numpy(), np.full(5, np.sum(a * a)), rtol=1e-12)

def test_r1_matches_finite_differences():
    D = LatentDiscriminator(w_dim=4, num_layers=3).double()
    w = torch.randn([3, 4], dtype=torch.float64)
    penalty, _logits = encoder_loss.r1_penalty(D, w)
    eps = 1e-6
    for n in range(3):
        grad = np.zeros(4)
        for j in range(4):
            wp, wm = w[n].numpy().copy(), w[n].numpy().copy()
            wp[j] += eps
            wm[j] -= eps
            grad[j] = (_np_mlp(D, wp[None])[0, 0] - _np_mlp(D, wm[None])[0, 0]) / (2 * eps)
        np.testing.assert_allclose(penalty[n].item(), np.sum(grad ** 2), rtol=1e-6)

#----------------------------------------------------------------------------
# The loss on a tiny generator: phases and gradient routing.

def _setup(**loss_kwargs):
    G = testing.tiny_generator()
    E = dnnlib.util.construct_class_by_name(**encoder_module.small_encoder_kwargs(32, w_dim=32, feature_channels=16))
    with torch.no_grad():
        E.latent_avg.copy_(G.mapping.w_avg)
    latent_D = LatentDiscriminator(w_dim=32).requires_grad_(False)   # as the loop builds them: each phase enables its own
    E.requires_grad_(False)
    kwargs = dict(progressive_start=8, progressive_step=4)
    kwargs.update(loss_kwargs)
    loss = encoder_loss.E4EEncoderLoss(device='cpu', G_mapping=G.mapping, G_synthesis=G.synthesis, D=None, encoder=E,
        latent_D=latent_D, **kwargs)
    return G, E, latent_D, loss

def _run_phase(loss, module, phase, real, z):
    for p in module.parameters():
        p.requires_grad_(True)
    loss.accumulate_gradients(phase=phase, real_img=real, real_c=None, gen_z=z, gen_c=None, sync=True, gain=1)
    for p in module.parameters():
        p.requires_grad_(False)

def test_G_receives_no_gradient_and_keeps_w_avg():
    G, E, latent_D, loss = _setup(progressive_start=None)     # all rows: every encoder weight is used
    G.train()
    w_avg = G.mapping.w_avg.clone()
    state = {k: v.clone() for k, v in G.state_dict().items()}
    real = torch.rand([4, 3, 32, 32]) * 2 - 1
    z = torch.randn([4, G.z_dim])
    for phase, module in [('latent_Dmain', latent_D), ('latent_Dreg', latent_D), ('encoderboth', E)]:
        _run_phase(loss, module, phase, real, z)
    assert all(p.grad is None for p in G.parameters())
    assert torch.equal(G.mapping.w_avg, w_avg)
    assert all(torch.equal(v, state[k]) for k, v in G.state_dict().items())
    assert all(p.grad is not None for p in latent_D.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in E.parameters())

def test_encoder_phase_follows_progressive_schedule_and_counts_images():
    G, E, latent_D, loss = _setup(progressive_start=8, progressive_step=4)
    real = torch.rand([4, 3, 32, 32]) * 2 - 1
    z = torch.randn([4, G.z_dim])
    seen = []
    for _ in range(5):
        stage = loss.stage()
        _run_phase(loss, E, 'encoderboth', real, z)
        seen.append(stage)
        used = [idx for idx in range(1, E.num_ws) if E.styles[idx].linear.weight.grad is not None]
        assert used == list(range(1, stage + 1))
        assert E.progressive_stage == E.num_ws - 1      # restored: snapshots hold the encoder as built
        E.zero_grad(set_to_none=True)
    assert seen == [_e4e_stage(n, 8, 8, 4) for n in (0, 4, 8, 12, 16)] == [0, 0, 1, 2, 3]
    assert loss.state_dict()['nimg'] == 20

def test_encoder_loss_is_sum_of_terms():
    G, E, latent_D, loss = _setup(progressive_start=None, delta_weight=0.5, adv_weight=0.25)
    real = torch.rand([2, 3, 32, 32]) * 2 - 1
    torch.manual_seed(1)
    total, ws, _img = loss.encoder_loss(real)
    torch.manual_seed(1)
    with torch.no_grad():
        img = G.synthesis(E(real)[0], noise_mode='random')
    want = (img - real).square().mean([1, 2, 3]) + 0.5 * encoder_loss.delta_regularisation(ws, 7) \
        + 0.25 * torch.nn.functional.softplus(-latent_D(ws.reshape(-1, 32))).reshape(2, 8).mean(1)
    torch.testing.assert_close(total.detach(), want.detach(), rtol=1e-4, atol=1e-5)

#----------------------------------------------------------------------------

def test_zero_deltas_give_the_stage0_codes_with_every_row():
    _G, E, _latent_D, _loss = _setup()
    encoder_loss.zero_deltas(E)
    E.eval()
    x = torch.rand([2, 3, 32, 32]) * 2 - 1
    ws = E(x)[0]
    with encoder_loss.progressive(E, 0):
        ws0 = E(x)[0]
    assert E.progressive_stage == 7
    assert torch.equal(ws, ws0) and torch.equal(ws, ws[:, :1].expand_as(ws))

def test_latent_D_phase_gradient_matches_formula():
    G, E, latent_D, loss = _setup(progressive_start=0, progressive_step=8)
    real = torch.rand([4, 3, 32, 32]) * 2 - 1
    z = torch.randn([4, G.z_dim])
    _run_phase(loss, E, 'encoderboth', real, z)            # 4 images seen: still stage 1 (rows 0, 1)
    assert loss.stage() == 1
    E.zero_grad(set_to_none=True)
    with torch.no_grad(), encoder_loss.progressive(E, 1):
        ws = E.train()(real)[0]
        w_real = G.mapping(z, None)[:, 0]
    _run_phase(loss, latent_D, 'latent_Dmain', real, z)
    got = [p.grad.clone() for p in latent_D.parameters()]
    params = [p.detach().clone().requires_grad_(True) for p in latent_D.parameters()]
    def mlp(x):
        for idx in range(0, len(params), 2):
            x = x @ params[idx].T + params[idx + 1]
            x = torch.where(x > 0, x, 0.2 * x) if idx < len(params) - 2 else x
        return x
    want = torch.log1p(torch.exp(-mlp(w_real))).mean() + torch.log1p(torch.exp(mlp(ws[:, :2].reshape(-1, 32)))).mean()
    for g, w in zip(got, torch.autograd.grad(want, params)):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-6)

def test_w_pool_keeps_codes_and_resumes_exactly():
    pool = encoder_loss.LatentPool(5)
    first = torch.randn([5, 3])
    assert torch.equal(pool.query(first), first)                         # filling: codes pass through
    state = pool.state_dict()
    rng = torch.get_rng_state()
    later = torch.randn([40, 3])
    out = pool.query(later)
    seen = torch.cat([first, later])
    assert all(any(torch.equal(o, s) for s in seen) for o in out)        # every code is a real one
    swapped = sum(not torch.equal(o, x) for o, x in zip(out, later))
    assert 8 <= swapped <= 32                                             # about half come from the pool
    again = encoder_loss.LatentPool(5)
    again.load_state_dict(state, 'cpu')
    torch.set_rng_state(rng)
    assert torch.equal(again.query(torch.randn([40, 3])), out)
