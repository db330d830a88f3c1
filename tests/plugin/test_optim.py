"""Tests for gradstyle_plugin/optim.py (Lookahead around Adam).

The reference is a NumPy simulation of Adam (Kingma & Ba 2014, Algorithm 1 with L2 weight decay
added to the gradient, as torch.optim.Adam does) wrapped in Lookahead (Zhang et al. 2019,
Algorithm 1), on a quadratic f(x) = 0.5 x^T A x - b^T x whose gradient is A x - b.
"""

import io

import numpy as np
import pytest
import torch

from gradstyle_plugin.optim import Lookahead
from stylegan2_ada_pytorch import dnnlib

#----------------------------------------------------------------------------

def _problem(dim=6, seed=0):
    rnd = np.random.RandomState(seed)
    Q = rnd.randn(dim, dim)
    A = Q @ Q.T / dim + np.eye(dim)
    b = rnd.randn(dim)
    x0 = rnd.randn(dim)
    return A, b, x0

def _np_lookahead_adam(A, b, x0, steps, lr, betas, eps, weight_decay, k, alpha, lr_at=None):
    x = x0.copy(); slow = x0.copy(); m = np.zeros_like(x); v = np.zeros_like(x)
    for t in range(1, steps + 1):
        step_lr = lr_at(t) if lr_at else lr
        g = A @ x - b + weight_decay * x
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        m_hat = m / (1 - betas[0] ** t)
        v_hat = v / (1 - betas[1] ** t)
        x = x - step_lr * m_hat / (np.sqrt(v_hat) + eps)
        if t % k == 0:
            slow = slow + alpha * (x - slow)
            x = slow.copy()
    return x

def _torch_steps(opt, param, A, b, steps, lr_at=None, start=0):
    At, bt = torch.tensor(A), torch.tensor(b)
    for t in range(start + 1, start + steps + 1):
        if lr_at:
            for group in opt.param_groups:
                group['lr'] = lr_at(t)
        opt.zero_grad(set_to_none=True)
        loss = 0.5 * param @ At @ param - bt @ param
        loss.backward()
        opt.step()

#----------------------------------------------------------------------------

@pytest.mark.parametrize('k,alpha,weight_decay', [(5, 0.5, 0.0), (3, 0.8, 0.01), (1, 0.3, 0.0)])
def test_matches_numpy_adam_lookahead(k, alpha, weight_decay):
    A, b, x0 = _problem()
    kwargs = dict(lr=0.05, betas=(0.8, 0.99), eps=1e-8, weight_decay=weight_decay, k=k, alpha=alpha)
    param = torch.nn.Parameter(torch.tensor(x0))
    opt = dnnlib.util.construct_class_by_name(params=[param], class_name='gradstyle_plugin.optim.Lookahead', **kwargs)
    assert isinstance(opt, torch.optim.Optimizer)
    _torch_steps(opt, param, A, b, 23)
    ref = _np_lookahead_adam(A, b, x0, 23, **kwargs)
    plain = _np_lookahead_adam(A, b, x0, 23, **dict(kwargs, k=10**9))   # Adam alone, for scale
    err = np.abs(param.detach().numpy() - ref).max()
    print(f'k={k} alpha={alpha} wd={weight_decay}: max abs err vs NumPy {err:.2e} (Lookahead-vs-Adam gap {np.abs(ref - plain).max():.2e})')
    assert err < 1e-6
    if k > 1:
        assert np.abs(ref - plain).max() > 1e-3

def test_lr_changes_reach_inner_optimizer():
    A, b, x0 = _problem(seed=1)
    lr_at = lambda t: 0.05 / (1 + 0.2 * t)
    kwargs = dict(lr=0.05, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, k=4, alpha=0.5)
    param = torch.nn.Parameter(torch.tensor(x0))
    opt = Lookahead([param], **kwargs)
    _torch_steps(opt, param, A, b, 13, lr_at=lr_at)
    ref = _np_lookahead_adam(A, b, x0, 13, lr_at=lr_at, **kwargs)
    err = np.abs(param.detach().numpy() - ref).max()
    print(f'scheduled lr: max abs err {err:.2e}')
    assert err < 1e-6

def test_state_dict_round_trip_resumes_exactly():
    A, b, x0 = _problem(seed=2)
    kwargs = dict(lr=0.03, betas=(0.9, 0.99), k=5, alpha=0.5)
    p_full = torch.nn.Parameter(torch.tensor(x0))
    opt_full = Lookahead([p_full], **kwargs)
    _torch_steps(opt_full, p_full, A, b, 17)

    p_a = torch.nn.Parameter(torch.tensor(x0))
    opt_a = Lookahead([p_a], **kwargs)
    _torch_steps(opt_a, p_a, A, b, 7)                                       # mid-period: slow != fast
    buf = io.BytesIO()
    torch.save({'param': p_a.detach().clone(), 'opt': opt_a.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)

    p_b = torch.nn.Parameter(saved['param'].clone())
    opt_b = Lookahead([p_b], lr=1.0, betas=(0.5, 0.5), k=5, alpha=0.5)    # wrong hyper-parameters, restored by loading
    opt_b.load_state_dict(saved['opt'])
    assert opt_b.inner.param_groups is opt_b.param_groups
    _torch_steps(opt_b, p_b, A, b, 10, start=7)
    assert torch.equal(p_b.detach(), p_full.detach())
    ref = _np_lookahead_adam(A, b, x0, 17, eps=1e-8, weight_decay=0.0, **kwargs)
    print(f'resume: exact equality; vs NumPy {np.abs(p_b.detach().numpy() - ref).max():.2e}')

def test_bad_arguments():
    p = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match='k must'):
        Lookahead(p, k=0)
    with pytest.raises(ValueError, match='alpha'):
        Lookahead(p, alpha=1.5)
    with pytest.raises(ValueError, match='base'):
        Lookahead(p, base='torch.nn.Linear')

#----------------------------------------------------------------------------

def test_gradient_centralisation_matches_numpy_sgd():
    # Inner SGD (lr 0.1) with k larger than the run: each step is x <- x - 0.1 * (g - mean of g over dims 1..).
    rnd = np.random.RandomState(3)
    w0, v0 = rnd.randn(4, 3, 2), rnd.randn(5)
    target_w, target_v = rnd.randn(4, 3, 2), rnd.randn(5)
    w = torch.nn.Parameter(torch.tensor(w0))
    v = torch.nn.Parameter(torch.tensor(v0))
    opt = Lookahead([w, v], lr=0.1, base='torch.optim.SGD', k=100, centralize=True)
    x_w, x_v = w0.copy(), v0.copy()
    for _ in range(3):
        opt.zero_grad()
        (((w - torch.tensor(target_w)) ** 3).sum() + ((v - torch.tensor(target_v)) ** 2).sum()).backward()
        opt.step()
        g_w = 3 * (x_w - target_w) ** 2
        x_w = x_w - 0.1 * (g_w - g_w.mean(axis=(1, 2), keepdims=True))
        x_v = x_v - 0.1 * 2 * (x_v - target_v)                   # 1-D: not centred
    np.testing.assert_allclose(w.detach().numpy(), x_w, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(v.detach().numpy(), x_v, rtol=1e-12, atol=1e-12)

#----------------------------------------------------------------------------
