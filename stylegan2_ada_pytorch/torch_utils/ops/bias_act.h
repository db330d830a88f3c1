// Fused bias + activation + gain + clamp: shared declarations of bias_act.cpp and bias_act.cu.
// Written from scratch for the clean-room StyleGAN2-ADA toolkit (see bias_act.py for semantics).

#pragma once
#include <cstdint>
#include <ATen/ATen.h>
#ifdef OPS_CPU_EMULATION
typedef void* cudaStream_t;     // CPU test harness: no CUDA headers.
#else
#include <cuda_runtime_api.h>
#endif

// Activation ids (`cuda_idx` in bias_act.activation_funcs).
enum BiasActKind {
    kLinear = 1, kRelu = 2, kLrelu = 3, kTanh = 4, kSigmoid = 5,
    kElu = 6, kSelu = 7, kSoftplus = 8, kSwish = 9
};

// One elementwise pass. Element i (in memory order) belongs to channel (i / bias_stride) % bias_size.
//   grad == 0: y = clamp(gain * act(x + b))
//   grad == 1: y = x * d/ds[clamp(gain * act(s))]                  (x is the incoming gradient)
//   grad == 2: y = x * dy * d2/ds2[clamp(gain * act(s))]           (second-order term)
// with s = xref + b when xref is given, otherwise the derivative is recovered from yref.
struct BiasActParams {
    const void* x;          // [numel]
    const void* b;          // [bias_size] or nullptr
    const void* xref;       // [numel] or nullptr
    const void* yref;       // [numel] or nullptr
    const void* dy;         // [numel] or nullptr (grad == 2 only)
    void*       y;          // [numel] output
    int64_t     numel;
    int64_t     bias_stride;
    int64_t     bias_size;
    int         grad;
    int         act;
    double      alpha;
    double      gain;
    double      clamp;      // < 0: no clamping
};

// Launch the kernel for the given dtype (float, double, half or bfloat16) on `stream`.
void bias_act_launch(const BiasActParams& p, at::ScalarType dtype, cudaStream_t stream);
