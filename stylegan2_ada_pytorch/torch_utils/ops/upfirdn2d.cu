// CUDA kernel of the upfirdn2d plugin: one thread per output sample, visiting only the filter
// taps that land on nonzero (non-inserted, non-padding) input samples.
// Written from scratch for the clean-room StyleGAN2-ADA toolkit (see upfirdn2d.py for semantics).

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#ifndef OPS_CPU_EMULATION
#include <c10/cuda/CUDAException.h>
#endif
#include "upfirdn2d.h"

//----------------------------------------------------------------------------

// Taps k in [k_begin, k_end) with step `up` hit input samples (base + k) / up of an axis of size `in`.
__device__ __forceinline__ void tap_range(int base, int up, int filter, int in, int& k_begin, int& k_end)
{
    int k = base < 0 ? -base : 0;
    int r = (base + k) % up;
    if (r != 0)
        k += up - r;
    int last = in * up - base;          // First k whose sample lies beyond the input.
    k_begin = k;
    k_end = last < filter ? last : filter;
}

template <class scalar_t> __global__ void upfirdn2d_kernel(Upfirdn2dParams p)
{
    typedef at::opmath_type<scalar_t> T;
    const scalar_t* x = (const scalar_t*)p.x;
    scalar_t* y = (scalar_t*)p.y;
    const int64_t total = p.num_images * p.num_channels * p.out_h * p.out_w;

    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int ox = (int)(i % p.out_w);
        int64_t rest = i / p.out_w;
        int oy = (int)(rest % p.out_h);
        rest /= p.out_h;
        int64_t c = rest % p.num_channels;
        int64_t n = rest / p.num_channels;

        int base_x = ox * p.down_x - p.pad_x0;
        int base_y = oy * p.down_y - p.pad_y0;
        int kx0, kx1, ky0, ky1;
        tap_range(base_x, p.up_x, p.filter_w, p.in_w, kx0, kx1);
        tap_range(base_y, p.up_y, p.filter_h, p.in_h, ky0, ky1);

        const scalar_t* xc = x + n * p.x_stride[0] + c * p.x_stride[1];
        T sum = T(0);
        for (int ky = ky0; ky < ky1; ky += p.up_y) {
            const scalar_t* row = xc + (int64_t)((base_y + ky) / p.up_y) * p.x_stride[2];
            int fy = p.flip ? ky : p.filter_h - 1 - ky;
            for (int kx = kx0; kx < kx1; kx += p.up_x) {
                int fx = p.flip ? kx : p.filter_w - 1 - kx;
                sum += (T)row[(int64_t)((base_x + kx) / p.up_x) * p.x_stride[3]] * (T)p.f[fy * p.filter_w + fx];
            }
        }
        y[n * p.y_stride[0] + c * p.y_stride[1] + (int64_t)oy * p.y_stride[2] + (int64_t)ox * p.y_stride[3]] = (scalar_t)(sum * (T)p.gain);
    }
}

//----------------------------------------------------------------------------

#ifndef OPS_CPU_EMULATION   // The CPU test harness runs the kernel bodies with its own launcher.

void upfirdn2d_launch(const Upfirdn2dParams& p, at::ScalarType dtype, cudaStream_t stream)
{
    const int block = 256;
    const int64_t total = p.num_images * p.num_channels * p.out_h * p.out_w;
    int64_t blocks = (total + block - 1) / block;
    int grid = (int)(blocks < 65536 ? blocks : 65536);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, dtype, "upfirdn2d_cuda", [&] {
        upfirdn2d_kernel<scalar_t><<<grid, block, 0, stream>>>(p);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
}

#endif
