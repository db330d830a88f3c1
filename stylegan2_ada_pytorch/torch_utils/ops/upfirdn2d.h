// Upsample + pad + FIR filter + downsample: shared declarations of upfirdn2d.cpp and upfirdn2d.cu.
// Written from scratch for the clean-room StyleGAN2-ADA toolkit (see upfirdn2d.py for semantics).

#pragma once
#include <cstdint>
#include <ATen/ATen.h>
#ifdef OPS_CPU_EMULATION
typedef void* cudaStream_t;     // CPU test harness: no CUDA headers.
#else
#include <cuda_runtime_api.h>
#endif

// out[n,c,oy,ox] = gain * sum_{ky,kx} u[n,c, oy*down_y + ky - pad_y0, ox*down_x + kx - pad_x0] * f'[ky,kx]
// where u is x with up-1 zeros inserted after every sample and f' is f flipped in both axes
// (true convolution) unless `flip` is set (correlation).
struct Upfirdn2dParams {
    const void*  x;             // [N, C, in_h, in_w], any strides
    const float* f;             // [filter_h, filter_w], contiguous float32
    void*        y;             // [N, C, out_h, out_w], any strides
    int64_t      x_stride[4];
    int64_t      y_stride[4];
    int64_t      num_images;    // N
    int64_t      num_channels;  // C
    int          in_h, in_w, out_h, out_w;
    int          filter_h, filter_w;
    int          up_x, up_y, down_x, down_y;
    int          pad_x0, pad_y0;
    bool         flip;
    double       gain;
};

// Launch the kernel for the given dtype (float, double, half or bfloat16) on `stream`.
void upfirdn2d_launch(const Upfirdn2dParams& p, at::ScalarType dtype, cudaStream_t stream);
