// Selective Attention (GradStyle, section 3.3, eq. 9): fused CPU kernels.
//
// Exact top-mu attention: per (batch*head, query) row of scores s = q.k_j * scale, the threshold t is
// the kk-th largest score (exact selection without a sort: vectorised counting passes narrow a
// bracket, std::nth_element finishes), the kept set is {j : s_j >= t} (ties all kept) and the row is
// a softmax over the kept set (float32: a vectorised polynomial exp, relative error < 3e-7). Queries are processed in chunks of `chunk` rows per
// (batch*head) so that at most `chunk` x Lk scores per thread are alive; the backward pass recomputes
// the scores per chunk from the saved threshold and log-sum-exp (flash-attention style).
//
// Shape legend (all tensors contiguous, one dtype, float32 or float64):
//   B = batch * heads, Lq = queries, Lk = keys, D = q/k channels, Dv = v channels, C = chunk rows.
//   q [B, Lq, D], k [B, Lk, D], v [B, Lk, Dv], out/dout [B, Lq, Dv], thr/lse/delta [B, Lq].

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

//----------------------------------------------------------------------------
// Row helpers. The hot loops are plain C++ written so that the compiler vectorises them; on x86-64
// Linux with GCC they are compiled for AVX-512, AVX2 and baseline and dispatched at load time, and
// the gather of the selection uses AVX-512 compress if the CPU has it (-DSA_PORTABLE: neither).

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && !defined(SA_PORTABLE)
#define SA_HOT __attribute__((target_clones("avx512f", "avx2", "default")))
#define SA_X86_DISPATCH
#include <immintrin.h>
#else
#define SA_HOT
#endif

// Number of entries of row[0:n] that are >= x.
template <typename T>
SA_HOT static int64_t count_ge(const T* row, int64_t n, T x)
{
    int64_t c = 0;
    for (int64_t j = 0; j < n; j++)
        c += (row[j] >= x) ? 1 : 0;
    return c;
}

// Copy the entries of row[0:n] in [lo, hi) to out (branch-free); returns how many.
template <typename T>
static int64_t gather_in_range_generic(const T* row, int64_t n, T lo, T hi, T* out)
{
    int64_t m = 0;
    for (int64_t j = 0; j < n; j++) {
        const T x = row[j];
        out[m] = x;
        m += int64_t(x >= lo) & int64_t(x < hi);
    }
    return m;
}

#if defined(SA_X86_DISPATCH)
__attribute__((target("avx512f"))) static int64_t gather_in_range_avx512(const float* row, int64_t n, float lo, float hi, float* out)
{
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    int64_t m = 0, j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m512 x = _mm512_loadu_ps(row + j);
        const __mmask16 keep = _mm512_cmp_ps_mask(x, vlo, _CMP_GE_OQ) & _mm512_cmp_ps_mask(x, vhi, _CMP_LT_OQ);
        _mm512_storeu_ps(out + m, _mm512_maskz_compress_ps(keep, x));  // out has n + 16 slots.
        m += __builtin_popcount((unsigned)keep);
    }
    return m + gather_in_range_generic<float>(row + j, n - j, lo, hi, out + m);
}
#endif

template <typename T>
static int64_t gather_in_range(const T* row, int64_t n, T lo, T hi, T* out)
{
    return gather_in_range_generic<T>(row, n, lo, hi, out);
}

template <>
int64_t gather_in_range<float>(const float* row, int64_t n, float lo, float hi, float* out)
{
#if defined(SA_X86_DISPATCH)
    static const bool avx512 = __builtin_cpu_supports("avx512f");
    if (avx512)
        return gather_in_range_avx512(row, n, lo, hi, out);
#endif
    return gather_in_range_generic<float>(row, n, lo, hi, out);
}

// Multiply by scale in place and return the minimum and maximum.
template <typename T>
SA_HOT static void scale_min_max(T* row, int64_t n, T scale, T* lo, T* hi)
{
    constexpr int W = 16;
    T mn[W], mx[W];
    for (int l = 0; l < W; l++)
        mn[l] = mx[l] = row[0] * scale;
    int64_t j = 0;
    for (; j + W <= n; j += W) {
        for (int l = 0; l < W; l++) {
            const T x = row[j + l] * scale;
            row[j + l] = x;
            mn[l] = (x < mn[l]) ? x : mn[l];
            mx[l] = (x > mx[l]) ? x : mx[l];
        }
    }
    for (; j < n; j++) {
        row[j] *= scale;
        mn[0] = (row[j] < mn[0]) ? row[j] : mn[0];
        mx[0] = (row[j] > mx[0]) ? row[j] : mx[0];
    }
    *lo = *std::min_element(mn, mn + W);
    *hi = *std::max_element(mx, mx + W);
}

// The kk-th largest entry of row[0:n] (1 <= kk <= n), exactly. The bracket [lo, hi) with
// count_ge(lo) >= kk > count_ge(hi) is narrowed by interpolation on the counts (vectorised counting
// passes, no data movement) until few entries remain inside; those are then gathered and the answer
// is selected among them with std::nth_element. Any bracket gives the exact result; the narrowing
// only saves work (it stops when it no longer helps, e.g. on large groups of equal values).
template <typename T>
static T kth_largest(const T* row, int64_t n, int64_t kk, T lo, T hi, std::vector<T>& scratch)
{
    if (kk == 1 || lo == hi)
        return hi;
    if (kk == n)
        return lo;
    int64_t c_lo = n, c_hi = count_ge<T>(row, n, hi);   // count_ge(hi) >= 1, maybe >= kk if ties at max.
    if (c_hi >= kk)
        return hi;
    for (int iter = 0; iter < 48 && c_lo - c_hi > 48; iter++) {
        double frac = double(c_lo - kk) / double(c_lo - c_hi);  // Interpolate, then keep off the ends.
        frac = std::min(std::max(frac, 0.02), 0.98);
        if (iter % 3 == 2)
            frac = 0.5;                                          // Guaranteed progress in value space.
        const T x = lo + T(frac * double(hi - lo));
        if (!(x > lo && x < hi))
            break;
        const int64_t c = count_ge<T>(row, n, x);
        if (c >= kk) { lo = x; c_lo = c; } else { hi = x; c_hi = c; }
    }
    scratch.resize(n + 16);
    const int64_t m = gather_in_range<T>(row, n, lo, hi, scratch.data());
    const int64_t rank = kk - c_hi;                              // 1-based rank inside [lo, hi).
    std::nth_element(scratch.begin(), scratch.begin() + (rank - 1), scratch.begin() + m, std::greater<T>());
    return scratch[rank - 1];
}

// exp(x) for x <= 0, vectorisable: 2^n * p(r) with x = n ln2 + r, |r| <= ln2/2 (n rounded with the
// 1.5 * 2^23 trick), degree-6 Taylor polynomial (relative error < 3e-7); x < -87 gives 0 (true < 2e-38).
static inline float exp_nonpos(float x)
{
    const float xc = (x < -87.0f) ? -87.0f : x;
    const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const float r = (xc - n * 0.693145751953125f) - n * 1.42860682030941723212e-6f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float pow2n;
    std::memcpy(&pow2n, &bits, sizeof(pow2n));
    return (x < -87.0f) ? 0.0f : p * pow2n;
}
static inline double exp_nonpos(double x) { return std::exp(x); }

// In place: row[j] = exp(row[j] - shift) where row[j] >= t (kept), else 0. Returns the row sum.
template <typename T>
SA_HOT static T masked_exp_row(T* __restrict row, int64_t n, T t, T shift)
{
    for (int64_t j = 0; j < n; j++) {
        const T x = row[j];
        const T p = exp_nonpos(x - shift);
        row[j] = (x >= t) ? p : T(0);
    }
    constexpr int W = 16;
    T acc[W] = {};
    int64_t j = 0;
    for (; j + W <= n; j += W)
        for (int l = 0; l < W; l++)
            acc[l] += row[j + l];
    for (; j < n; j++)
        acc[0] += row[j];
    T total = 0;
    for (int l = 0; l < W; l++)
        total += acc[l];
    return total;
}

//----------------------------------------------------------------------------
// Work items 0..count-1 over the intra-op threads, handed out one at a time (an atomic counter),
// so that a thread slowed down by other load on the machine simply takes fewer items (tiny problems,
// `flops` < 2^20, run on the calling thread: waking the pool costs more). Each thread
// gets its own buffer of shape `buf_shape` (scores) and selection scratch vector.

template <typename T, typename F>
static void for_each_item(int64_t count, int64_t flops, const F& body, at::IntArrayRef buf_shape, const at::TensorOptions& options)
{
    std::atomic<int64_t> next(0);
    const int64_t workers = (flops < (1 << 20)) ? 1 : std::min<int64_t>(count, at::get_num_threads()); // Tiny: no threads.
    at::parallel_for(0, workers, 1, [&](int64_t begin, int64_t end) {
        for (int64_t w = begin; w < end; w++) {
            at::Tensor buf = at::empty(buf_shape, options);
            std::vector<T> scratch;
            for (int64_t item = next++; item < count; item = next++)
                body(item, buf, scratch);
        }
    });
}

//----------------------------------------------------------------------------
// Forward: one chunk of rows of one (batch*head).

template <typename T>
static void forward_chunk(const at::Tensor& q_c, const at::Tensor& k_b, const at::Tensor& v_b, at::Tensor out_c,
    T* thr, T* lse, int64_t kk, T scale, at::Tensor& S_buf, std::vector<T>& scratch)
{
    const int64_t rows = q_c.size(0);
    const int64_t Lk = k_b.size(0);
    at::Tensor S = S_buf.narrow(0, 0, rows);
    at::mm_out(S, q_c, k_b.t());
    T* s = S.data_ptr<T>();
    std::vector<T> denom(rows);
    for (int64_t r = 0; r < rows; r++) {
        T* row = s + r * Lk;
        T lo, hi;
        scale_min_max<T>(row, Lk, scale, &lo, &hi);
        thr[r] = kth_largest<T>(row, Lk, kk, lo, hi, scratch);
        denom[r] = masked_exp_row<T>(row, Lk, thr[r], hi);
        lse[r] = hi + std::log(denom[r]);
    }
    at::mm_out(out_c, S, v_b);
    T* o = out_c.data_ptr<T>();
    const int64_t Dv = out_c.size(1);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < Dv; c++)
            o[r * Dv + c] /= denom[r];
}

std::vector<at::Tensor> selective_attention_forward(at::Tensor q, at::Tensor k, at::Tensor v, int64_t kk, double scale, int64_t chunk)
{
    TORCH_CHECK(q.dim() == 3 && k.dim() == 3 && v.dim() == 3, "selective_attention_forward: expected 3-d q, k, v");
    TORCH_CHECK(q.is_contiguous() && k.is_contiguous() && v.is_contiguous(), "selective_attention_forward: inputs must be contiguous");
    TORCH_CHECK(chunk >= 1 && kk >= 1 && kk <= k.size(1), "selective_attention_forward: bad chunk or kk");
    const int64_t B = q.size(0), Lq = q.size(1), Lk = k.size(1), Dv = v.size(2);
    const int64_t n_chunks = (Lq + chunk - 1) / chunk;
    at::Tensor out = at::empty({B, Lq, Dv}, q.options());
    at::Tensor thr = at::empty({B, Lq}, q.options());
    at::Tensor lse = at::empty({B, Lq}, q.options());
    AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "selective_attention_forward", [&] {
        for_each_item<scalar_t>(B * n_chunks, B * Lq * Lk * (q.size(2) + Dv), [&](int64_t item, at::Tensor& S_buf, std::vector<scalar_t>& scratch) {
            const int64_t b = item / n_chunks, r0 = (item % n_chunks) * chunk;
            const int64_t rows = std::min(chunk, Lq - r0);
            forward_chunk<scalar_t>(q[b].narrow(0, r0, rows), k[b], v[b], out[b].narrow(0, r0, rows),
                thr.data_ptr<scalar_t>() + b * Lq + r0, lse.data_ptr<scalar_t>() + b * Lq + r0,
                kk, (scalar_t)scale, S_buf, scratch);
        }, {std::min(chunk, Lq), Lk}, q.options());
    });
    return {out, thr, lse};
}

//----------------------------------------------------------------------------
// Backward: one (batch*head), its query chunks in sequence (dk, dv accumulate over the chunks).

template <typename T>
static void backward_head(const at::Tensor& q_b, const at::Tensor& k_b, const at::Tensor& v_b, const at::Tensor& dout_b,
    const T* thr, const T* lse, const T* delta, at::Tensor dq_b, at::Tensor dk_b, at::Tensor dv_b, T scale, int64_t chunk)
{
    const int64_t Lq = q_b.size(0), Lk = k_b.size(0);
    at::Tensor P_buf = at::empty({std::min(chunk, Lq), Lk}, q_b.options());
    at::Tensor dP_buf = at::empty({std::min(chunk, Lq), Lk}, q_b.options());
    dk_b.zero_();
    dv_b.zero_();
    for (int64_t r0 = 0; r0 < Lq; r0 += chunk) {
        const int64_t rows = std::min(chunk, Lq - r0);
        at::Tensor q_c = q_b.narrow(0, r0, rows), dout_c = dout_b.narrow(0, r0, rows);
        at::Tensor P = P_buf.narrow(0, 0, rows), dP = dP_buf.narrow(0, 0, rows);
        at::mm_out(P, q_c, k_b.t());                       // Same call as the forward: same scores.
        T* p = P.data_ptr<T>();
        for (int64_t r = 0; r < rows; r++) {                // Normalised probabilities of the kept set.
            T lo, hi;
            scale_min_max<T>(p + r * Lk, Lk, scale, &lo, &hi);
            masked_exp_row<T>(p + r * Lk, Lk, thr[r0 + r], lse[r0 + r]);
        }
        at::mm_out(dP, dout_c, v_b.t());
        T* dp = dP.data_ptr<T>();
        for (int64_t r = 0; r < rows; r++) {
            const T dr = delta[r0 + r];
            T* dp_row = dp + r * Lk;
            const T* p_row = p + r * Lk;
            for (int64_t j = 0; j < Lk; j++)
                dp_row[j] = p_row[j] * (dp_row[j] - dr) * scale;
        }
        at::Tensor dq_c = dq_b.narrow(0, r0, rows);
        at::mm_out(dq_c, dP, k_b);
        dk_b.addmm_(dP.t(), q_c);
        dv_b.addmm_(P.t(), dout_c);
    }
}

std::vector<at::Tensor> selective_attention_backward(at::Tensor q, at::Tensor k, at::Tensor v, at::Tensor dout,
    at::Tensor thr, at::Tensor lse, at::Tensor delta, double scale, int64_t chunk)
{
    TORCH_CHECK(q.is_contiguous() && k.is_contiguous() && v.is_contiguous() && dout.is_contiguous(),
        "selective_attention_backward: inputs must be contiguous");
    TORCH_CHECK(thr.is_contiguous() && lse.is_contiguous() && delta.is_contiguous(), "selective_attention_backward: row stats must be contiguous");
    const int64_t B = q.size(0), Lq = q.size(1);
    at::Tensor dq = at::empty_like(q), dk = at::empty_like(k), dv = at::empty_like(v);
    AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "selective_attention_backward", [&] {
        for_each_item<scalar_t>(B, B * Lq * k.size(1) * (q.size(2) + v.size(2)), [&](int64_t b, at::Tensor&, std::vector<scalar_t>&) {
            backward_head<scalar_t>(q[b], k[b], v[b], dout[b], thr.data_ptr<scalar_t>() + b * Lq,
                lse.data_ptr<scalar_t>() + b * Lq, delta.data_ptr<scalar_t>() + b * Lq, dq[b], dk[b], dv[b],
                (scalar_t)scale, chunk);
        }, {0}, q.options());
    });
    return {dq, dk, dv};
}

//----------------------------------------------------------------------------

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("forward", &selective_attention_forward, "Selective attention forward: (out, thr, lse)");
    m.def("backward", &selective_attention_backward, "Selective attention backward: (dq, dk, dv)");
}

//----------------------------------------------------------------------------
