// Python entry point of the bias_act plugin: argument checks, then one kernel launch (bias_act.cu).
// Written from scratch for the clean-room StyleGAN2-ADA toolkit (see bias_act.py for semantics).

#include <torch/extension.h>
#ifndef OPS_CPU_EMULATION
#include <c10/cuda/CUDAGuard.h>
#endif
#include "bias_act.h"

// OPS_CPU_EMULATION: the test harness compiles this file together with the kernel bodies as host
// C++ (tests/toolkit/test_custom_ops.py) and supplies CPU versions of these three hooks.
#ifndef OPS_CPU_EMULATION
#define OPS_CHECK_DEVICE(t, what) TORCH_CHECK((t).is_cuda(), what " must be a CUDA tensor")
#define OPS_DEVICE_GUARD(t) const at::cuda::OptionalCUDAGuard device_guard(device_of(t))
#define OPS_CURRENT_STREAM() at::cuda::getCurrentCUDAStream()
#endif

static void check_like(const torch::Tensor& t, const torch::Tensor& x, const char* name)
{
    if (t.numel() == 0)
        return;
    TORCH_CHECK(t.device() == x.device(), "bias_act: ", name, " must be on the device of x");
    TORCH_CHECK(t.scalar_type() == x.scalar_type(), "bias_act: ", name, " must have the dtype of x");
    TORCH_CHECK(t.sizes() == x.sizes() && t.strides() == x.strides(), "bias_act: ", name, " must have the shape and strides of x");
}

static torch::Tensor bias_act(torch::Tensor x, torch::Tensor b, torch::Tensor xref, torch::Tensor yref,
    torch::Tensor dy, int64_t grad, int64_t dim, int64_t act, double alpha, double gain, double clamp)
{
    OPS_CHECK_DEVICE(x, "bias_act: x");
    TORCH_CHECK(x.is_non_overlapping_and_dense(), "bias_act: x must be dense (contiguous in some memory format)");
    TORCH_CHECK(x.numel() < (int64_t(1) << 40), "bias_act: x is too large");
    TORCH_CHECK(0 <= grad && grad <= 2, "bias_act: grad must be 0, 1 or 2");
    TORCH_CHECK(1 <= act && act <= 9, "bias_act: unknown activation id ", act);
    check_like(xref, x, "xref");
    check_like(yref, x, "yref");
    check_like(dy, x, "dy");
    TORCH_CHECK(grad != 2 || (dy.numel() > 0 && xref.numel() > 0), "bias_act: grad=2 needs dy and xref");
    if (b.numel() > 0) {
        TORCH_CHECK(0 <= dim && dim < x.dim(), "bias_act: dim out of range");
        TORCH_CHECK(b.device() == x.device(), "bias_act: b must be on the device of x");
        TORCH_CHECK(b.scalar_type() == x.scalar_type(), "bias_act: b must have the dtype of x");
        TORCH_CHECK(b.dim() == 1 && b.size(0) == x.size(dim), "bias_act: b must have shape [x.shape[dim]]");
        b = b.contiguous();
    }

    OPS_DEVICE_GUARD(x);
    torch::Tensor y = torch::empty_like(x);   // Same strides as x (x is dense).
    if (x.numel() == 0)
        return y;

    BiasActParams p;
    p.x = x.data_ptr();
    p.b = b.numel() ? b.data_ptr() : nullptr;
    p.xref = xref.numel() ? xref.data_ptr() : nullptr;
    p.yref = yref.numel() ? yref.data_ptr() : nullptr;
    p.dy = dy.numel() ? dy.data_ptr() : nullptr;
    p.y = y.data_ptr();
    p.numel = x.numel();
    p.bias_stride = b.numel() ? x.stride(dim) : 1;
    p.bias_size = b.numel() ? x.size(dim) : 1;
    p.grad = (int)grad;
    p.act = (int)act;
    p.alpha = alpha;
    p.gain = gain;
    p.clamp = clamp;
    bias_act_launch(p, x.scalar_type(), OPS_CURRENT_STREAM());
    return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.def("bias_act", &bias_act, "Fused bias + activation + gain + clamp (CUDA)");
}
