// CUDA kernel of the bias_act plugin: bias + activation + gain + clamp and its 1st/2nd derivatives.
// Written from scratch for the clean-room StyleGAN2-ADA toolkit (see bias_act.py for semantics).

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#ifndef OPS_CPU_EMULATION
#include <c10/cuda/CUDAException.h>
#endif
#include "bias_act.h"

//----------------------------------------------------------------------------
// Math helpers overloaded for the two accumulation types.

__device__ __forceinline__ float  fexp(float v)    { return expf(v); }
__device__ __forceinline__ double fexp(double v)   { return exp(v); }
__device__ __forceinline__ float  ftanh(float v)   { return tanhf(v); }
__device__ __forceinline__ double ftanh(double v)  { return tanh(v); }
__device__ __forceinline__ float  flog1p(float v)  { return log1pf(v); }
__device__ __forceinline__ double flog1p(double v) { return log1p(v); }

template <class T> __device__ __forceinline__ T sigmoid_of(T s) { return T(1) / (T(1) + fexp(-s)); }

// SELU constants (Klambauer et al. 2017).
#define SELU_SCALE 1.0507009873554804934193349852946
#define SELU_ALPHA 1.6732632423543772848170429916717

//----------------------------------------------------------------------------
// act(s), act'(s), act''(s) from the pre-activation s.

template <class T> struct ActValue { T a, d1, d2; };

template <class T> __device__ ActValue<T> act_from_s(int act, T s, T alpha)
{
    ActValue<T> r = {s, T(1), T(0)};
    if (act == kRelu) {
        r.a = s > T(0) ? s : T(0);
        r.d1 = s > T(0) ? T(1) : T(0);
    } else if (act == kLrelu) {
        r.a = s > T(0) ? s : s * alpha;
        r.d1 = s > T(0) ? T(1) : alpha;
    } else if (act == kTanh) {
        r.a = ftanh(s);
        r.d1 = T(1) - r.a * r.a;
        r.d2 = T(-2) * r.a * r.d1;
    } else if (act == kSigmoid) {
        r.a = sigmoid_of(s);
        r.d1 = r.a * (T(1) - r.a);
        r.d2 = r.d1 * (T(1) - T(2) * r.a);
    } else if (act == kElu) {
        T e = fexp(s);
        r.a = s > T(0) ? s : e - T(1);
        r.d1 = s > T(0) ? T(1) : e;
        r.d2 = s > T(0) ? T(0) : e;
    } else if (act == kSelu) {
        T e = fexp(s);
        r.a = s > T(0) ? T(SELU_SCALE) * s : T(SELU_SCALE * SELU_ALPHA) * (e - T(1));
        r.d1 = s > T(0) ? T(SELU_SCALE) : T(SELU_SCALE * SELU_ALPHA) * e;
        r.d2 = s > T(0) ? T(0) : T(SELU_SCALE * SELU_ALPHA) * e;
    } else if (act == kSoftplus) {
        // Like torch.nn.functional.softplus (beta 1, threshold 20): linear above the threshold.
        T sg = sigmoid_of(s);
        r.a = s > T(20) ? s : flog1p(fexp(s));
        r.d1 = s > T(20) ? T(1) : sg;
        r.d2 = s > T(20) ? T(0) : sg * (T(1) - sg);
    } else if (act == kSwish) {
        T sg = sigmoid_of(s);
        r.a = s * sg;
        r.d1 = sg * (T(1) + s * (T(1) - sg));
        r.d2 = sg * (T(1) - sg) * (T(2) + s * (T(1) - T(2) * sg));
    }
    return r;
}

// act'(s) recovered from the (possibly clamped) output y = gain * act(s).
template <class T> __device__ T act_d1_from_y(int act, T y, T alpha, T gain)
{
    T a = gain != T(0) ? y / gain : T(0);
    switch (act) {
        case kRelu:     return y > T(0) ? T(1) : T(0);
        case kLrelu:    return y > T(0) ? T(1) : alpha;
        case kTanh:     return T(1) - a * a;
        case kSigmoid:  return a * (T(1) - a);
        case kElu:      return a > T(0) ? T(1) : a + T(1);
        case kSelu:     return a > T(0) ? T(SELU_SCALE) : a + T(SELU_SCALE * SELU_ALPHA);
        case kSoftplus: return T(1) - fexp(-a);
        default:        return T(1);
    }
}

//----------------------------------------------------------------------------

template <class scalar_t> __global__ void bias_act_kernel(BiasActParams p)
{
    typedef at::opmath_type<scalar_t> T;
    const scalar_t* x = (const scalar_t*)p.x;
    const scalar_t* b = (const scalar_t*)p.b;
    const scalar_t* xref = (const scalar_t*)p.xref;
    const scalar_t* yref = (const scalar_t*)p.yref;
    const scalar_t* dy = (const scalar_t*)p.dy;
    scalar_t* y = (scalar_t*)p.y;
    const T alpha = (T)p.alpha, gain = (T)p.gain, clamp = (T)p.clamp;

    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.numel; i += (int64_t)gridDim.x * blockDim.x) {
        T bias = b ? (T)b[(i / p.bias_stride) % p.bias_size] : T(0);
        T xi = (T)x[i];
        T out;
        if (p.grad == 0) {
            out = gain * act_from_s(p.act, xi + bias, alpha).a;
            if (clamp >= T(0))
                out = out > clamp ? clamp : (out < -clamp ? -clamp : out);
        } else if (xref) {
            ActValue<T> v = act_from_s(p.act, (T)xref[i] + bias, alpha);
            T yv = gain * v.a;      // Unclamped output: the clamp passes gradients where |y| <= clamp.
            bool pass = clamp < T(0) || (yv <= clamp && yv >= -clamp);
            T deriv = p.grad == 1 ? v.d1 : v.d2 * (T)dy[i];
            out = pass ? xi * gain * deriv : T(0);
        } else if (yref) {
            T yv = (T)yref[i];      // Clamped output: |y| == clamp means the clamp was (almost surely) active.
            bool pass = clamp < T(0) || (yv < clamp && yv > -clamp);
            out = pass ? xi * gain * act_d1_from_y(p.act, yv, alpha, gain) : T(0);
        } else {
            out = xi * gain;
        }
        y[i] = (scalar_t)out;
    }
}

//----------------------------------------------------------------------------

#ifndef OPS_CPU_EMULATION   // The CPU test harness runs the kernel bodies with its own launcher.

void bias_act_launch(const BiasActParams& p, at::ScalarType dtype, cudaStream_t stream)
{
    const int block = 256;
    int64_t blocks = (p.numel + block - 1) / block;
    int grid = (int)(blocks < 65536 ? blocks : 65536);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, dtype, "bias_act_cuda", [&] {
        bias_act_kernel<scalar_t><<<grid, block, 0, stream>>>(p);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
}

#endif
