// Python entry point of the upfirdn2d plugin: argument checks, output allocation, kernel launch.
// Written from scratch for the clean-room StyleGAN2-ADA toolkit (see upfirdn2d.py for semantics).

#include <torch/extension.h>
#ifndef OPS_CPU_EMULATION
#include <c10/cuda/CUDAGuard.h>
#endif
#include "upfirdn2d.h"

// OPS_CPU_EMULATION: the test harness compiles this file together with the kernel bodies as host
// C++ (tests/toolkit/test_custom_ops.py) and supplies CPU versions of these three hooks.
#ifndef OPS_CPU_EMULATION
#define OPS_CHECK_DEVICE(t, what) TORCH_CHECK((t).is_cuda(), what " must be a CUDA tensor")
#define OPS_DEVICE_GUARD(t) const at::cuda::OptionalCUDAGuard device_guard(device_of(t))
#define OPS_CURRENT_STREAM() at::cuda::getCurrentCUDAStream()
#endif

static torch::Tensor upfirdn2d(torch::Tensor x, torch::Tensor f, int64_t upx, int64_t upy, int64_t downx, int64_t downy,
    int64_t padx0, int64_t padx1, int64_t pady0, int64_t pady1, bool flip, double gain)
{
    OPS_CHECK_DEVICE(x, "upfirdn2d: x");
    TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must be 4-D [N, C, H, W]");
    TORCH_CHECK(f.device() == x.device(), "upfirdn2d: f must be on the device of x");
    TORCH_CHECK(f.scalar_type() == torch::kFloat, "upfirdn2d: f must be float32");
    TORCH_CHECK(f.dim() == 2 && f.numel() > 0, "upfirdn2d: f must be a non-empty 2-D tensor");
    TORCH_CHECK(upx >= 1 && upy >= 1, "upfirdn2d: up must be >= 1");
    TORCH_CHECK(downx >= 1 && downy >= 1, "upfirdn2d: down must be >= 1");
    TORCH_CHECK(x.size(2) * upy < INT32_MAX && x.size(3) * upx < INT32_MAX, "upfirdn2d: x is too large");

    const int64_t fh = f.size(0), fw = f.size(1);
    const int64_t out_h = (x.size(2) * upy + pady0 + pady1 - fh + downy) / downy;
    const int64_t out_w = (x.size(3) * upx + padx0 + padx1 - fw + downx) / downx;
    TORCH_CHECK(x.size(2) * upy + pady0 + pady1 >= fh && x.size(3) * upx + padx0 + padx1 >= fw,
        "upfirdn2d: the padded input is smaller than the filter (output would be empty)");

    OPS_DEVICE_GUARD(x);
    f = f.contiguous();
    auto memory_format = x.suggest_memory_format();
    torch::Tensor y = torch::empty({x.size(0), x.size(1), out_h, out_w}, x.options().memory_format(memory_format));
    if (y.numel() == 0)
        return y;

    Upfirdn2dParams p;
    p.x = x.data_ptr();
    p.f = f.data_ptr<float>();
    p.y = y.data_ptr();
    for (int i = 0; i < 4; i++) {
        p.x_stride[i] = x.stride(i);
        p.y_stride[i] = y.stride(i);
    }
    p.num_images = x.size(0);
    p.num_channels = x.size(1);
    p.in_h = (int)x.size(2);
    p.in_w = (int)x.size(3);
    p.out_h = (int)out_h;
    p.out_w = (int)out_w;
    p.filter_h = (int)fh;
    p.filter_w = (int)fw;
    p.up_x = (int)upx;
    p.up_y = (int)upy;
    p.down_x = (int)downx;
    p.down_y = (int)downy;
    p.pad_x0 = (int)padx0;
    p.pad_y0 = (int)pady0;
    p.flip = flip;
    p.gain = gain;
    upfirdn2d_launch(p, x.scalar_type(), OPS_CURRENT_STREAM());
    return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("upfirdn2d", &upfirdn2d, "Upsample, pad, FIR filter and downsample (CUDA)");
}
