"""Selective Attention: exact top-mu% multi-head attention of GradStyle's Aligner.

GradStyle (Gradual Residuals Alignment), section 3.3, eq. 8-9: in the Global Alignment Module the
queries come from the edited features f_m^edi and the keys/values from the residual features F_m;
per query only the top mu% of the scores q.k^T enter the softmax, the rest are suppressed.

Exact semantics (what every implementation here computes):
    For each (batch, head, query) row of scores s[j] = q . k_j / sqrt(D) over the Lk keys, let
    kk = max(1, ceil(mu * Lk)) with 0 < mu <= 1 (mu is a fraction, not a percentage), the
    threshold t = the kk-th largest value of s, and the kept set K = {j : s[j] >= t}. Ties at the
    threshold are ALL kept, so K may hold more than kk keys and the result is deterministic.
    The output is sum_{j in K} softmax_K(s)[j] * v_j, where softmax_K normalises over K only
    (the other keys get probability exactly 0). mu = 1 is exactly dense softmax attention.
    (mu * Lk is rounded to 9 decimals before the ceil, so that e.g. 0.1 * 30 counts 3, not 4.)

Gradients (first order only; a double backward raises) flow through the kept entries only; the
threshold is treated as a constant, which is the true gradient wherever no score ties the
threshold (almost everywhere).

Implementations (`impl`):
    'cpp'   fused C++ op (ops/selective_attention.cpp): per (batch*head) and chunk of queries, one
            matmul for the scores, an exact selection of the threshold (interpolated counting passes
            narrow a bracket, std::nth_element finishes on the few values left inside), masked exp,
            one matmul with v; (batch*head, chunk) work items are handed to the at::parallel_for
            threads one at a time. Float32/float64 CPU tensors; built with
            custom_ops.get_plugin on first use, falling back to 'torch' (with one warning) if the
            build fails.
    'torch' pure PyTorch, the fallback: same chunking but batched over (batch, head), threshold
            from torch.topk (a selection, no full sort). Runs on any device.
    'auto'  'cpp' for CPU tensors if the plugin builds, else 'torch'.
Both save only the per-row threshold and log-sum-exp and recompute the scores chunk by chunk in
the backward pass (flash-attention style), so no [Lq, Lk] tensor per head is ever kept alive.

Dtypes: float16/bfloat16/float32 are computed in float32, float64 in float64; the output has the
dtype of q.

Shape legend:
    N = batch, H = heads, Lq = queries, Lk = keys/values, D = q/k channels (d_k), Dv = v channels,
    B = N * H, C = chunk of queries.
"""

import math
import os

import torch

from stylegan2_ada_pytorch.torch_utils import custom_ops
from stylegan2_ada_pytorch.torch_utils import misc

#----------------------------------------------------------------------------

cpp_chunk_size      = 128           # Default query rows per (batch*head) work item of the C++ op (2 MiB of fp32 scores at Lk = 4096).
torch_chunk_numel   = 1 << 20       # Default score elements per chunk of the PyTorch path (4 MiB in fp32).

_plugin = None      # None: not tried yet; False: unavailable; else the loaded extension module.
_plugin_sources = dict(module_name='selective_attention_plugin', sources=['selective_attention.cpp'],
    source_dir=os.path.join(os.path.dirname(__file__), 'ops'),
    extra_cflags=['-O3', '-fopenmp'], extra_ldflags=['-fopenmp'])

def _init():
    """Build (once per process) and load the C++ plugin; False if it is unavailable."""
    global _plugin
    if _plugin is None:
        _plugin = custom_ops.get_plugin(**_plugin_sources, fallback=True) or False
    return _plugin is not False

#----------------------------------------------------------------------------

def num_kept(mu, num_keys):
    """kk = max(1, ceil(mu * Lk)): how many scores per row the threshold keeps (more on ties)."""
    if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not (0 < mu <= 1):
        raise ValueError(f'selective_attention: mu must be a fraction in (0, 1], got {mu!r}')
    return min(num_keys, max(1, math.ceil(round(mu * num_keys, 9))))

def _check_inputs(q, k, v, mu):
    for name, x in [('q', q), ('k', k), ('v', v)]:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
            raise ValueError(f'selective_attention: {name} must be a 4-d float tensor [N, H, L, D], got '
                f'{type(x).__name__ if not isinstance(x, torch.Tensor) else (tuple(x.shape), x.dtype)}')
    if not (q.dtype == k.dtype == v.dtype and q.device == k.device == v.device):
        raise ValueError(f'selective_attention: q, k, v must share dtype and device, got {q.dtype}/{k.dtype}/{v.dtype} on {q.device}/{k.device}/{v.device}')
    N, H, _Lq, D = q.shape
    misc.assert_shape(k, [N, H, None, D])
    misc.assert_shape(v, [N, H, k.shape[2], None])
    if k.shape[2] == 0 or D == 0:
        raise ValueError(f'selective_attention: need at least one key and one channel, got k of shape {tuple(k.shape)}')
    return num_kept(mu, k.shape[2])

def _compute_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32

#----------------------------------------------------------------------------

def selective_attention(q, k, v, mu, *, chunk_size=None, impl='auto'):
    """Exact top-mu selective attention (see the module docstring); differentiable w.r.t. q, k, v.

    Args:
        q:          Queries [N, H, Lq, D].
        k:          Keys [N, H, Lk, D].
        v:          Values [N, H, Lk, Dv].
        mu:         Kept fraction of the scores per query, 0 < mu <= 1 (0.5 = "top 50%").
        chunk_size: Query rows per chunk (None: `cpp_chunk_size` rows per head for 'cpp', about
                    `torch_chunk_numel` scores over all heads for 'torch').
        impl:       'auto', 'cpp' or 'torch'.
    Returns:
        [N, H, Lq, Dv] in the dtype of q.

    Example:
        >>> q = torch.randn(1, 8, 4096, 64); k = v = torch.randn(1, 8, 4096, 64)
        >>> out = selective_attention(q, k, v, mu=0.5)                  # top 50% of 4096 keys
        >>> torch.allclose(selective_attention(q, k, v, 1.0),
        ...     torch.nn.functional.scaled_dot_product_attention(q, k, v), atol=1e-5)
        True
    """
    kk = _check_inputs(q, k, v, mu)
    if impl not in ('auto', 'cpp', 'torch'):
        raise ValueError(f"selective_attention: impl must be 'auto', 'cpp' or 'torch', got {impl!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f'selective_attention: chunk_size must be a positive int or None, got {chunk_size!r}')
    use_cpp = False
    if impl != 'torch' and q.device.type == 'cpu':
        use_cpp = _init()
    if impl == 'cpp' and not use_cpp:
        raise RuntimeError(f'selective_attention: impl="cpp" needs CPU tensors and the C++ plugin '
            f'(device {q.device}, plugin {"built" if _plugin else "unavailable"})')
    N, H, Lq, D = q.shape
    Lk, Dv = k.shape[2], v.shape[3]
    if chunk_size is None:
        chunk_size = cpp_chunk_size if use_cpp else max(1, torch_chunk_numel // (N * H * Lk))
    ct = _compute_dtype(q.dtype)
    q3, k3, v3 = [x.to(ct).reshape(N * H, -1, x.shape[3]).contiguous() for x in (q, k, v)]
    out = _SelectiveAttention.apply(q3, k3, v3, kk, 1 / math.sqrt(D), min(chunk_size, max(Lq, 1)), use_cpp)
    return out.reshape(N, H, Lq, Dv).to(q.dtype)

#----------------------------------------------------------------------------

class _SelectiveAttention(torch.autograd.Function):
    """q [B, Lq, D], k [B, Lk, D], v [B, Lk, Dv] -> out [B, Lq, Dv]; saves thr, lse [B, Lq]."""

    @staticmethod
    def forward(ctx, q, k, v, kk, scale, chunk, use_cpp):
        if use_cpp:
            out, thr, lse = _plugin.forward(q.detach(), k.detach(), v.detach(), kk, scale, chunk)
        else:
            out, thr, lse = _torch_forward(q, k, v, kk, scale, chunk)
        ctx.save_for_backward(q, k, v, out, thr, lse)
        ctx.scale, ctx.chunk, ctx.use_cpp = scale, chunk, use_cpp
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout):
        q, k, v, out, thr, lse = ctx.saved_tensors
        dout = dout.contiguous()
        delta = (dout * out).sum(-1)                    # [B, Lq]: rowsum(P * dP) = dout . out
        if ctx.use_cpp:
            dq, dk, dv = _plugin.backward(q.detach(), k.detach(), v.detach(), dout.detach(), thr, lse, delta.detach(), ctx.scale, ctx.chunk)
        else:
            dq, dk, dv = _torch_backward(q, k, v, dout, thr, lse, delta, ctx.scale, ctx.chunk)
        return dq, dk, dv, None, None, None, None

#----------------------------------------------------------------------------
# Pure-PyTorch path: chunks of queries, batched over B = N * H.

def _scores(q_c, k, scale):
    """Scaled scores of one chunk: [B, C, Lk]. The single place the PyTorch path forms scores."""
    return torch.matmul(q_c, k.transpose(1, 2)).mul_(scale)

def _masked_shifted(s, thr, shift):
    """s - shift where s >= thr (kept), -inf elsewhere; thr/shift are [B, C, 1]."""
    return torch.where(s >= thr, s - shift, torch.tensor(-math.inf, dtype=s.dtype, device=s.device))

def _torch_forward(q, k, v, kk, scale, chunk):
    B, Lq, _ = q.shape
    Lk = k.shape[1]
    out = q.new_empty([B, Lq, v.shape[2]])
    thr = q.new_empty([B, Lq])
    lse = q.new_empty([B, Lq])
    for r0 in range(0, Lq, chunk):
        s = _scores(q[:, r0:r0 + chunk], k, scale)
        t = s.amin(-1, keepdim=True) if kk == Lk else s.topk(kk, dim=-1, sorted=False).values.amin(-1, keepdim=True)
        m = s.amax(-1, keepdim=True)
        p = _masked_shifted(s, t, m).exp_()
        del s
        denom = p.sum(-1, keepdim=True)
        out[:, r0:r0 + chunk] = torch.matmul(p, v).div_(denom)
        thr[:, r0:r0 + chunk] = t[..., 0]
        lse[:, r0:r0 + chunk] = (m + denom.log())[..., 0]
    return out, thr, lse

def _torch_backward(q, k, v, dout, thr, lse, delta, scale, chunk):
    dq = torch.empty_like(q)
    dk = torch.zeros_like(k)
    dv = torch.zeros_like(v)
    for r0 in range(0, q.shape[1], chunk):
        rows = slice(r0, r0 + chunk)
        q_c, dout_c = q[:, rows], dout[:, rows]
        p = _masked_shifted(_scores(q_c, k, scale), thr[:, rows, None], lse[:, rows, None]).exp_()
        ds = torch.matmul(dout_c, v.transpose(1, 2)).sub_(delta[:, rows, None]).mul_(p).mul_(scale)
        dq[:, rows] = torch.matmul(ds, k)
        dk.baddbmm_(ds.transpose(1, 2), q_c)
        dv.baddbmm_(p.transpose(1, 2), dout_c)
    return dq, dk, dv

#----------------------------------------------------------------------------

def selective_attention_reference(q, k, v, mu, selection='sort'):
    """Brute-force selective attention (the test reference): full [N, H, Lq, Lk] scores, the
    threshold from a full sort per row (`selection='topk'`: from torch.topk, the straightforward
    baseline of the benchmark), masked softmax. Same semantics and dtype rules as
    `selective_attention`; differentiable through autograd. Memory: O(N * H * Lq * Lk).

    Example:
        >>> out_ref = selective_attention_reference(q, k, v, mu=0.5)
    """
    kk = _check_inputs(q, k, v, mu)
    if selection not in ('sort', 'topk'):
        raise ValueError(f"selective_attention_reference: selection must be 'sort' or 'topk', got {selection!r}")
    dtype, ct = q.dtype, _compute_dtype(q.dtype)
    q, k, v = q.to(ct), k.to(ct), v.to(ct)
    s = torch.matmul(q, k.transpose(-1, -2)) * (1 / math.sqrt(q.shape[-1]))
    if selection == 'sort':
        t = s.detach().sort(dim=-1, descending=True).values[..., kk - 1:kk]
    else:
        t = s.detach().topk(kk, dim=-1).values[..., kk - 1:kk]
    p = torch.softmax(s.masked_fill(s < t, -math.inf), dim=-1)
    return torch.matmul(p, v).to(dtype)

#----------------------------------------------------------------------------
