"""Tests of gradstyle_plugin.selective_attention (GradStyle section 3.3, eq. 9).

Independent references: a per-row NumPy loop (sorted list, threshold, kept set, softmax) for the
brute-force reference and the tie rule; torch's dense scaled_dot_product_attention for mu = 1;
float64 gradcheck for the hand-written backward passes. Both implementations ('cpp', 'torch') are
checked against the brute-force reference over a grid of mu, shapes, chunk sizes and dtypes.
"""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gradstyle_plugin import selective_attention as sa

IMPLS = ['cpp', 'torch']
MUS = [0.01, 0.1, 0.5, 0.73, 1.0]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#----------------------------------------------------------------------------

def numpy_selective_attention(q, k, v, mu):
    """Row-by-row brute force in float64 NumPy; returns (out, kept mask)."""
    q, k, v = [np.asarray(x, dtype=np.float64) for x in (q, k, v)]
    N, H, Lq, D = q.shape
    Lk = k.shape[2]
    kk = max(1, math.ceil(round(mu * Lk, 9)))
    out = np.zeros([N, H, Lq, v.shape[3]])
    kept = np.zeros([N, H, Lq, Lk], dtype=bool)
    for n in range(N):
        for h in range(H):
            for i in range(Lq):
                s = np.array([np.dot(q[n, h, i], k[n, h, j]) / math.sqrt(D) for j in range(Lk)])
                t = sorted(s.tolist(), reverse=True)[kk - 1]
                keep = s >= t
                e = np.where(keep, np.exp(s - s.max()), 0.0)
                out[n, h, i] = (e / e.sum()) @ v[n, h]
                kept[n, h, i] = keep
    return out, kept

def tied_inputs(N, H, Lq, Lk, D, seed):
    """Integer-valued q, k (exact scores; D = 16 or 64 makes the scale a power of 2) with
    duplicated keys, so that many scores tie, also at the threshold."""
    gen = torch.Generator().manual_seed(seed)
    q = torch.randint(-2, 3, [N, H, Lq, D], generator=gen).double()
    k = torch.randint(-1, 2, [N, H, Lk, D], generator=gen).double()
    k[:, :, Lk // 2:] = k[:, :, :Lk - Lk // 2]                    # Every key twice.
    v = torch.randn([N, H, Lk, 5], generator=gen, dtype=torch.float64)
    return q, k, v

def randn(*shape, dtype=torch.float32, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)

#----------------------------------------------------------------------------

def test_plugin_builds():
    assert sa._init(), 'the C++ selective attention plugin failed to build; see the warning for the log'

def test_num_kept():
    assert sa.num_kept(0.5, 4096) == 2048
    assert sa.num_kept(0.1, 30) == 3                       # 0.1 * 30 = 3.0000000000000004 in binary.
    assert sa.num_kept(0.73, 29) == 22                     # ceil(21.17)
    assert sa.num_kept(0.01, 7) == 1 and sa.num_kept(1.0, 7) == 7
    for bad in [0, 0.0, -0.5, 1.5, 50, float('nan'), '0.5', True]:
        with pytest.raises(ValueError, match='mu'):
            sa.num_kept(bad, 10)

def test_reference_matches_numpy_loop_with_ties():
    q, k, v = tied_inputs(1, 2, 6, 10, 16, seed=1)
    for mu in MUS:
        expected, _ = numpy_selective_attention(q, k, v, mu)
        np.testing.assert_allclose(sa.selective_attention_reference(q, k, v, mu).numpy(), expected, rtol=0, atol=1e-12)
        np.testing.assert_allclose(sa.selective_attention_reference(q, k, v, mu, selection='topk').numpy(), expected, rtol=0, atol=1e-12)

#----------------------------------------------------------------------------

@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('shape', [(1, 1, 5, 7, 8), (2, 3, 37, 29, 16), (1, 2, 70, 100, 64)])
def test_matches_reference(impl, dtype, shape):
    N, H, Lq, Lk, D = shape
    q, k, v = randn(N, H, Lq, D, dtype=dtype, seed=1), randn(N, H, Lk, D, dtype=dtype, seed=2), randn(N, H, Lk, 6, dtype=dtype, seed=3)
    for mu in MUS:
        ref = sa.selective_attention_reference(q, k, v, mu)
        for chunk in [None, 7, 64, 1000] + ([1] if Lq < 50 else []):
            out = sa.selective_attention(q, k, v, mu, chunk_size=chunk, impl=impl)
            assert out.dtype == dtype and out.shape == (N, H, Lq, 6)
            err = (out - ref).abs().max().item()
            assert err < 1e-5, f'mu={mu} chunk={chunk}: max abs error {err:.3g}'

@pytest.mark.parametrize('impl', IMPLS)
def test_ties_follow_the_rule(impl):
    # v = identity makes the output the attention matrix itself: check the kept set exactly.
    N, H, Lq, Lk = 2, 2, 9, 24
    q, k, _ = tied_inputs(N, H, Lq, Lk, 16, seed=3)
    eye = torch.eye(Lk, dtype=torch.float64).expand(N, H, Lk, Lk)
    rows_with_extra_ties = 0
    for mu in MUS:
        expected, kept = numpy_selective_attention(q, k, eye, mu)
        rows_with_extra_ties += int((kept.sum(-1) > sa.num_kept(mu, Lk)).sum())
        for dtype in [torch.float32, torch.float64]:
            for chunk in [None, 4]:
                p = sa.selective_attention(q.to(dtype), k.to(dtype), eye.to(dtype), mu, chunk_size=chunk, impl=impl).double().numpy()
                np.testing.assert_array_equal(p > 0, kept)
                np.testing.assert_allclose(p, expected, rtol=0, atol=1e-6)
    assert rows_with_extra_ties > 50           # The inputs really tie at the threshold.

@pytest.mark.parametrize('impl', IMPLS)
def test_tied_values_match_reference(impl):
    q, k, v = tied_inputs(2, 3, 33, 50, 64, seed=4)
    for mu in MUS:
        for dtype in [torch.float32, torch.float64]:
            ref = sa.selective_attention_reference(q.to(dtype), k.to(dtype), v.to(dtype), mu)
            out = sa.selective_attention(q.to(dtype), k.to(dtype), v.to(dtype), mu, chunk_size=10, impl=impl)
            assert (out - ref).abs().max().item() < 1e-5

@pytest.mark.parametrize('impl', IMPLS)
def test_mu_one_is_dense_sdpa(impl):
    q, k, v = randn(2, 4, 50, 64, seed=5), randn(2, 4, 77, 64, seed=6), randn(2, 4, 77, 64, seed=7)
    dense = F.scaled_dot_product_attention(q, k, v)
    for chunk in [None, 13]:
        err = (sa.selective_attention(q, k, v, 1.0, chunk_size=chunk, impl=impl) - dense).abs().max().item()
        assert err < 1e-5

#----------------------------------------------------------------------------

def _well_separated(q, k, mu, gap):
    """True if no score lies within `gap` of its row's threshold except the threshold itself."""
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    kk = sa.num_kept(mu, k.shape[2])
    srt = s.sort(dim=-1, descending=True).values
    if kk == k.shape[2]:
        return True
    return bool(((srt[..., kk - 1] - srt[..., kk]) > gap).all())

@pytest.mark.parametrize('impl', IMPLS)
def test_gradcheck_float64(impl):
    q, k, v = randn(1, 2, 5, 4, dtype=torch.float64, seed=8), randn(1, 2, 7, 4, dtype=torch.float64, seed=9), randn(1, 2, 7, 3, dtype=torch.float64, seed=10)
    for mu in [0.3, 0.5, 1.0]:
        assert _well_separated(q, k, mu, gap=1e-3)         # No near-ties: the selection is locally constant.
        inputs = [x.clone().requires_grad_() for x in (q, k, v)]
        fn = lambda a, b, c: sa.selective_attention(a, b, c, mu, chunk_size=2, impl=impl)
        assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7)

@pytest.mark.parametrize('impl', IMPLS)
def test_gradients_match_reference_autograd(impl):
    q, k, v = randn(2, 3, 41, 16, seed=11), randn(2, 3, 30, 16, seed=12), randn(2, 3, 30, 8, seed=13)
    go = randn(2, 3, 41, 8, seed=14)
    for mu in [0.1, 0.73]:
        grads = []
        for fn in [lambda a, b, c: sa.selective_attention(a, b, c, mu, chunk_size=9, impl=impl),
                   lambda a, b, c: sa.selective_attention_reference(a, b, c, mu)]:
            inputs = [x.clone().requires_grad_() for x in (q, k, v)]
            fn(*inputs).backward(go)
            grads.append([x.grad for x in inputs])
        for ours, ref in zip(*grads):
            assert (ours - ref).abs().max().item() < 1e-5

@pytest.mark.parametrize('impl', IMPLS)
def test_double_backward_is_refused(impl):
    q = torch.randn(1, 1, 4, 8, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(sa.selective_attention(q, q, q, 0.5, impl=impl).sum(), q, create_graph=True)
    with pytest.raises(RuntimeError, match='once_differentiable|does not require grad'):
        g.sum().backward()

@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_low_precision_returns_input_dtype(impl, dtype):
    q, k, v = [randn(1, 2, 20, 16, seed=s).to(dtype) for s in (15, 16, 17)]
    out = sa.selective_attention(q, k, v, 0.5, impl=impl)
    assert out.dtype == dtype
    ref = sa.selective_attention_reference(q.float(), k.float(), v.float(), 0.5)
    assert (out.float() - ref).abs().max().item() < 2e-2    # One rounding of the output to 8-11 bits.
    qg = q.clone().requires_grad_()
    sa.selective_attention(qg, k, v, 0.5, impl=impl).float().sum().backward()
    assert qg.grad.dtype == dtype and torch.isfinite(qg.grad.float()).all()

@pytest.mark.slow
def test_portable_build_matches_reference(monkeypatch):
    # The C++ op without the x86 dispatch (-DSA_PORTABLE): the generic loops other CPUs run.
    from stylegan2_ada_pytorch.torch_utils import custom_ops
    kwargs = dict(sa._plugin_sources, module_name='selective_attention_portable_test')
    kwargs['extra_cflags'] = kwargs['extra_cflags'] + ['-DSA_PORTABLE']
    monkeypatch.setattr(sa, '_plugin', custom_ops.get_plugin(**kwargs))
    q, k, v = randn(2, 3, 45, 16, seed=21), randn(2, 3, 300, 16, seed=22), randn(2, 3, 300, 8, seed=23)
    for mu in MUS:
        for dtype in [torch.float32, torch.float64]:
            ref = sa.selective_attention_reference(q.to(dtype), k.to(dtype), v.to(dtype), mu)
            assert (sa.selective_attention(q.to(dtype), k.to(dtype), v.to(dtype), mu, chunk_size=16, impl='cpp') - ref).abs().max() < 1e-5
    tq, tk, tv = tied_inputs(1, 2, 20, 40, 16, seed=24)
    assert (sa.selective_attention(tq, tk, tv, 0.5, impl='cpp') - sa.selective_attention_reference(tq, tk, tv, 0.5)).abs().max() < 1e-5

#----------------------------------------------------------------------------

def test_torch_path_never_forms_more_than_a_chunk_of_scores(monkeypatch):
    shapes = []
    real_scores = sa._scores
    monkeypatch.setattr(sa, '_scores', lambda q_c, k, scale: shapes.append(tuple(q_c.shape[:2]) + (k.shape[1],)) or real_scores(q_c, k, scale))
    q, k, v = [randn(2, 3, 50, 16, seed=s).requires_grad_() for s in (18, 19, 20)]
    sa.selective_attention(q, k, v, 0.5, chunk_size=8, impl='torch').sum().backward()
    assert len(shapes) == 2 * math.ceil(50 / 8)                   # Forward and backward, chunk by chunk.
    assert all(B == 6 and rows <= 8 and Lk == 50 for B, rows, Lk in shapes)
    shapes.clear()
    sa.selective_attention(q.detach(), k.detach(), v.detach(), 0.5, impl='torch')
    assert all(B * rows * Lk <= max(sa.torch_chunk_numel, 6 * 50) for B, rows, Lk in shapes)

@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='peak RSS through /proc is Linux only')
def test_peak_memory_is_bounded():
    # Peak RSS growth of forward + backward in fresh subprocesses (see benchmarks/bench_attention.py)
    # at L = 2048, 8 heads: the dense score tensor alone is 128 MiB, the brute force holds several.
    bench = os.path.join(REPO, 'benchmarks', 'bench_attention.py')
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536')
    peak = {}
    for method in ['ours', 'brute']:
        out = subprocess.run([sys.executable, bench, '--peak-of', f'{method},2048,1'], env=env, capture_output=True, text=True, check=True)
        peak[method] = int(out.stdout.strip().splitlines()[-1])
    assert peak['brute'] > 128 * 2**20                     # The measurement sees the score tensor.
    assert peak['ours'] < 32 * 2**20                       # Grads + outputs (12 MiB) + chunk buffers.
    assert peak['ours'] * 4 < peak['brute']

#----------------------------------------------------------------------------

def test_bad_inputs_are_explained():
    q = torch.randn(1, 2, 5, 8)
    with pytest.raises(ValueError, match='mu'):
        sa.selective_attention(q, q, q, 0)
    with pytest.raises(ValueError, match='impl'):
        sa.selective_attention(q, q, q, 0.5, impl='cuda')
    with pytest.raises(ValueError, match='chunk_size'):
        sa.selective_attention(q, q, q, 0.5, chunk_size=0)
    with pytest.raises(ValueError, match='k must be a 4-d float tensor'):
        sa.selective_attention(q, q[0], q, 0.5)
    with pytest.raises(ValueError, match='share dtype'):
        sa.selective_attention(q, q.double(), q.double(), 0.5)
    with pytest.raises(RuntimeError, match='impl="cpp" needs CPU tensors'):
        sa.selective_attention(q.to('meta'), q.to('meta'), q.to('meta'), 0.5, impl='cpp')
    with pytest.raises(AssertionError, match='dimension 3'):
        sa.selective_attention(q, torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 8), 0.5)

#----------------------------------------------------------------------------
