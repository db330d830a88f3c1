"""Plugin build machinery (`torch_utils.custom_ops`) and the CUDA code paths of bias_act/upfirdn2d.

- Broken builds: one warning, no retry, the op still matches the reference (fast: the broken
  sources fail in the preprocessor).
- Locks: a leftover `lock` file is removed; a lock held by a live builder times out with a message.
- CPU emulation (slow, CPU toolchain only): the CUDA kernel bodies of bias_act.cu/upfirdn2d.cu are
  compiled as host C++ (`OPS_CPU_EMULATION`) and driven through the same autograd Functions the
  CUDA path uses, then compared with the reference implementation, including 2nd derivatives.
- cuda_build: the real plugins compile with nvcc and expose their entry points.
- gpu: CUDA vs reference on a device (skipped here: no GPU).
"""

import os
import re
import warnings

import numpy as np
import pytest
import torch

from stylegan2_ada_pytorch.torch_utils import custom_ops
from stylegan2_ada_pytorch.torch_utils.ops import bias_act
from stylegan2_ada_pytorch.torch_utils.ops import upfirdn2d

OPS_DIR = os.path.dirname(bias_act.__file__)

#----------------------------------------------------------------------------

@pytest.fixture
def fresh_custom_ops(monkeypatch, tmp_path):
    """Isolated plugin caches and build root; restored afterwards."""
    monkeypatch.setattr(custom_ops, '_cached_plugins', {})
    monkeypatch.setattr(custom_ops, '_failed_plugins', {})
    monkeypatch.setattr(custom_ops, 'verbosity', 'brief')
    monkeypatch.setenv('TORCH_EXTENSIONS_DIR', str(tmp_path / 'extensions'))
    monkeypatch.setenv('TORCH_CUDA_ARCH_LIST', '8.0')     # No device here to detect it from.
    return tmp_path

@pytest.fixture
def count_builds(monkeypatch):
    calls = []
    original = custom_ops._build_and_import
    def counting(*args, **kwargs):
        calls.append(args[0])
        return original(*args, **kwargs)
    monkeypatch.setattr(custom_ops, '_build_and_import', counting)
    return calls

def write_broken_copy(src_dir, dst_dir, name):
    """Copy a plugin's sources, each made to fail at its first line."""
    os.makedirs(dst_dir, exist_ok=True)
    for ext in ['cpp', 'cu', 'h']:
        with open(os.path.join(src_dir, f'{name}.{ext}')) as f:
            text = f.read()
        with open(os.path.join(dst_dir, f'{name}.{ext}'), 'w') as f:
            # A missing include is fatal at once (an #error would still preprocess all of torch's headers).
            f.write('#include "deliberately_broken_missing_header.h"\n' + text)

def runtime_warnings(record):
    return [w for w in record if issubclass(w.category, RuntimeWarning) and 'plugin' in str(w.message)]

#----------------------------------------------------------------------------

@pytest.mark.parametrize('module', [bias_act, upfirdn2d], ids=['bias_act', 'upfirdn2d'])
def test_broken_build_warns_once_and_falls_back(module, fresh_custom_ops, count_builds, monkeypatch, capsys):
    name = module.__name__.rsplit('.', 1)[-1]
    broken_dir = str(fresh_custom_ops / 'broken')
    write_broken_copy(OPS_DIR, broken_dir, name)
    monkeypatch.setattr(module, '_plugin', None)
    monkeypatch.setattr(module, '_plugin_sources', dict(module._plugin_sources, source_dir=broken_dir))

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        results = [module._init() for _ in range(3)]
    assert results == [False, False, False]
    assert count_builds == [f'{name}_plugin']                  # built once, never retried
    found = runtime_warnings(record)
    assert len(found) == 1
    message = str(found[0].message)
    assert '\n' not in message and f'"{name}_plugin"' in message
    log = re.search(r'Build log: (\S+)$', message).group(1)
    assert os.path.isfile(log) and 'deliberately_broken_missing_header.h' in open(log).read()
    assert capsys.readouterr().out.count(f'Setting up PyTorch plugin "{name}_plugin"... Failed!') == 1

    # The op keeps working through the reference path and matches an independent NumPy result.
    x = np.random.default_rng(0).standard_normal([2, 3, 4, 4])
    if module is bias_act:
        b = np.array([0.5, -1.0, 2.0])
        out = bias_act.bias_act(torch.tensor(x), torch.tensor(b), act='lrelu', impl='cuda')
        xb = x + b.reshape(1, 3, 1, 1)
        ref = np.where(xb > 0, xb, 0.2 * xb) * np.sqrt(2)
    else:
        out = upfirdn2d.upfirdn2d(torch.tensor(x), torch.ones([2, 2], dtype=torch.float64), padding=[0, 1, 0, 1], impl='cuda')
        padded = np.pad(x, [(0, 0), (0, 0), (0, 1), (0, 1)])
        ref = padded[:, :, :-1, :-1] + padded[:, :, 1:, :-1] + padded[:, :, :-1, 1:] + padded[:, :, 1:, 1:]
    assert np.abs(out.numpy() - ref).max() < 1e-12

def test_get_plugin_without_fallback_raises_once_then_fast(fresh_custom_ops, count_builds):
    src = fresh_custom_ops / 'tiny.cpp'
    src.write_text('#error deliberately broken\n')
    for _ in range(2):
        with pytest.raises(RuntimeError, match='"tiny_plugin" failed to build'):
            custom_ops.get_plugin('tiny_plugin', [str(src)])
    assert count_builds == ['tiny_plugin']

def test_verbosity_none_is_silent(fresh_custom_ops, monkeypatch, capsys):
    monkeypatch.setattr(custom_ops, 'verbosity', 'none')
    src = fresh_custom_ops / 'quiet.cpp'
    src.write_text('#error deliberately broken\n')
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        assert custom_ops.get_plugin('quiet_plugin', [str(src)], fallback=True) is None
    assert capsys.readouterr().out == ''
    assert len(runtime_warnings(record)) == 1

def test_missing_source_is_reported(fresh_custom_ops):
    with pytest.raises(RuntimeError, match='"ghost_plugin" failed to build'):
        custom_ops.get_plugin('ghost_plugin', ['nope.cpp'], source_dir=str(fresh_custom_ops))
    assert 'nope.cpp' in open(custom_ops._failed_plugins['ghost_plugin']).read()

def test_source_digest_changes_with_content(tmp_path):
    a = tmp_path / 'a.cpp'
    a.write_text('int x = 1;\n')
    d1 = custom_ops._source_digest([str(a)])
    assert d1 == custom_ops._source_digest([str(a)])
    a.write_text('int x = 2;\n')
    assert custom_ops._source_digest([str(a)]) != d1

#----------------------------------------------------------------------------

def test_leftover_lock_is_removed(fresh_custom_ops, monkeypatch):
    src = fresh_custom_ops / 'locked.cpp'
    src.write_text('int x;\n')
    build_dir = os.path.join(custom_ops._extensions_root(), 'locked_plugin', custom_ops._source_digest([str(src)]))
    os.makedirs(build_dir)
    lock = os.path.join(build_dir, 'lock')
    open(lock, 'w').close()                     # What an interrupted build of older PyTorch leaves behind.
    seen = []
    def fake_load(**kwargs):                    # Older PyTorch would wait here for as long as `lock` exists.
        seen.append(os.path.exists(lock))
        raise RuntimeError('stop after the lock check')
    import torch.utils.cpp_extension
    monkeypatch.setattr(torch.utils.cpp_extension, 'load', fake_load)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        assert custom_ops.get_plugin('locked_plugin', [str(src)], fallback=True) is None
    assert seen == [False]

def test_cuda_build_without_device_or_arch_list_is_explained(fresh_custom_ops, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip('a CUDA device is present; the architecture can be detected')
    monkeypatch.delenv('TORCH_CUDA_ARCH_LIST')
    src = fresh_custom_ops / 'k.cu'
    src.write_text('__global__ void k() {}\n')
    with pytest.raises(RuntimeError, match='failed to build'):
        custom_ops.get_plugin('noarch_plugin', [str(src)])
    assert 'set TORCH_CUDA_ARCH_LIST' in open(custom_ops._failed_plugins['noarch_plugin']).read()

def test_held_lock_times_out(fresh_custom_ops, monkeypatch):
    fcntl = pytest.importorskip('fcntl')
    monkeypatch.setattr(custom_ops, 'lock_timeout', 0.5)
    src = fresh_custom_ops / 'busy.cpp'
    src.write_text('int x;\n')
    build_dir = os.path.join(custom_ops._extensions_root(), 'busy_plugin', custom_ops._source_digest([str(src)]))
    os.makedirs(build_dir)
    with open(os.path.join(build_dir, 'build.lock'), 'a+') as holder:
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)     # Another (live) builder.
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter('always')
            assert custom_ops.get_plugin('busy_plugin', [str(src)], fallback=True) is None
    found = runtime_warnings(record)
    assert len(found) == 1 and 'TimeoutError' in str(found[0].message)
    assert 'build lock' in open(custom_ops._failed_plugins['busy_plugin']).read()

#----------------------------------------------------------------------------
# CPU emulation of the CUDA kernels.

EMULATION_HARNESS = r'''
// Runs the CUDA kernel bodies of {name}.cu on the CPU: one "thread" walks the grid-stride loop.
#include <torch/extension.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <math.h>
#define OPS_CPU_EMULATION
#define __global__
#define __device__
#define __forceinline__ inline
struct OpsEmuDim {{ unsigned int x; }};
static const OpsEmuDim blockIdx = {{0}}, threadIdx = {{0}}, blockDim = {{1}}, gridDim = {{1}};
#define OPS_CHECK_DEVICE(t, what) TORCH_CHECK((t).device().is_cpu(), what " must be a CPU tensor in the emulation")
#define OPS_DEVICE_GUARD(t)
#define OPS_CURRENT_STREAM() nullptr
#include "{name}.cpp"
#include "{name}.cu"
void {name}_launch(const {params}& p, at::ScalarType dtype, cudaStream_t)
{{
    AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16, dtype, "emulation", [&] {{ {name}_kernel<scalar_t>(p); }});
}}
'''

@pytest.fixture(scope='module')
def emulated_plugins(tmp_path_factory):
    """Build the CPU emulation of both kernels (cached in the extensions dir by source digest)."""
    src_dir = tmp_path_factory.mktemp('emulation')
    plugins = {}
    for name, params in [('bias_act', 'BiasActParams'), ('upfirdn2d', 'Upfirdn2dParams')]:
        harness = src_dir / f'{name}_emulation.cpp'
        harness.write_text(EMULATION_HARNESS.format(name=name, params=params))
        headers = [os.path.join(OPS_DIR, f'{name}.{ext}') for ext in ['cpp', 'cu', 'h']]
        plugins[name] = custom_ops.get_plugin(f'{name}_emulation', [str(harness)], headers=headers)
        assert custom_ops.get_plugin(f'{name}_emulation', [str(harness)], headers=headers) is plugins[name]
    return plugins

@pytest.mark.slow
def test_bias_act_kernel_emulated(emulated_plugins, monkeypatch):
    monkeypatch.setattr(bias_act, '_plugin', emulated_plugins['bias_act'])
    monkeypatch.setattr(bias_act, '_bias_act_cuda_cache', {})
    torch.manual_seed(0)
    errors = [0.0, 0.0, 0.0]
    for act, spec in bias_act.activation_funcs.items():
        for dim, clamp, alpha, gain in [(1, None, None, None), (2, 0.7, 0.3, 1.3), (0, 0.0, None, None)]:
            x = torch.randn([3, 4, 5], dtype=torch.float64) * 2
            x = (x + 0.05 * x.sign()).requires_grad_(True)
            b = (0.1 * torch.randn([x.shape[dim]], dtype=torch.float64)).requires_grad_(True)
            fn = bias_act._bias_act_cuda(dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
            y = fn.apply(x, b)
            r = bias_act._bias_act_ref(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
            errors[0] = max(errors[0], (y - r).abs().max().item())
            dy = torch.randn_like(y)
            g = torch.autograd.grad(y, [x, b], dy, create_graph=True)
            gr = torch.autograd.grad(r, [x, b], dy, create_graph=True)
            errors[1] = max(errors[1], max((u - v).abs().max().item() for u, v in zip(g, gr)))
            if spec.has_2nd_grad:
                v = torch.randn_like(x)
                g2 = torch.autograd.grad((g[0] * v).sum(), [x, b])
                gr2 = torch.autograd.grad((gr[0] * v).sum(), [x, b])
                errors[2] = max(errors[2], max((p - q).abs().max().item() for p, q in zip(g2, gr2)))
                assert torch.autograd.gradgradcheck(lambda x, b: fn.apply(x, b), (x, b))
            assert torch.autograd.gradcheck(lambda x, b: fn.apply(x, b), (x, b))
    print(f'bias_act kernel (CPU emulation, float64) vs ref: value {errors[0]:.2e}, grad {errors[1]:.2e}, 2nd grad {errors[2]:.2e}')
    assert max(errors) < 1e-12

    x16 = torch.randn([2, 8, 4, 4]).half().to(memory_format=torch.channels_last)
    b16 = torch.randn([8]).half()
    y16 = bias_act._bias_act_cuda(act='lrelu', clamp=256).apply(x16, b16)
    r32 = bias_act._bias_act_ref(x16.float(), b16.float(), act='lrelu', clamp=256)
    err16 = (y16.float() - r32).abs().max().item()
    print(f'bias_act kernel (CPU emulation, float16 channels_last) vs float32 ref: {err16:.2e}')
    assert y16.dtype == torch.float16 and err16 < 1e-2

@pytest.mark.slow
def test_upfirdn2d_kernel_emulated(emulated_plugins, monkeypatch):
    monkeypatch.setattr(upfirdn2d, '_plugin', emulated_plugins['upfirdn2d'])
    monkeypatch.setattr(upfirdn2d, '_upfirdn2d_cuda_cache', {})
    torch.manual_seed(1)
    worst = 0.0
    for up, down, padding, flip, sep, gain in [(1, 1, 0, False, False, 1), (2, 1, [2, 1, 2, 1], False, True, 4),
            (1, 2, [1, 1, 1, 1], True, False, 1), ([3, 1], [1, 2], [2, -1, 0, 3], False, False, -1.5),
            (3, 3, [-1, 2, 3, 0], True, True, 0.5), (2, 2, 1, False, False, 2)]:
        x = torch.randn([2, 3, 7, 6], dtype=torch.float64, requires_grad=True)
        f = torch.randn([5] if sep else [3, 4])
        fn = upfirdn2d._upfirdn2d_cuda(up=up, down=down, padding=padding, flip_filter=flip, gain=gain)
        y = fn.apply(x, f)
        r = upfirdn2d._upfirdn2d_ref(x, f, up=up, down=down, padding=padding, flip_filter=flip, gain=gain)
        assert y.shape == r.shape
        dy = torch.randn_like(r)
        g, = torch.autograd.grad(y, x, dy, create_graph=True)
        gr, = torch.autograd.grad(r, x, dy, create_graph=True)
        worst = max(worst, (y - r).abs().max().item(), (g - gr).abs().max().item())
        small = x[:1, :1].detach().requires_grad_(True)
        assert torch.autograd.gradgradcheck(lambda t: fn.apply(t, f), (small,))
    print(f'upfirdn2d kernel (CPU emulation, float64) vs ref: values and grads max abs err {worst:.2e}')
    assert worst < 1e-12

    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    x = torch.randn([2, 4, 8, 8]).to(memory_format=torch.channels_last)
    y = upfirdn2d._upfirdn2d_cuda(down=2, padding=1).apply(x, f)
    assert (y - upfirdn2d._upfirdn2d_ref(x, f, down=2, padding=1)).abs().max().item() < 1e-6
    y16 = upfirdn2d._upfirdn2d_cuda(up=2, padding=[2, 1, 2, 1], gain=4).apply(x.half(), f)
    err16 = (y16.float() - upfirdn2d._upfirdn2d_ref(x.half().float(), f, up=2, padding=[2, 1, 2, 1], gain=4)).abs().max().item()
    print(f'upfirdn2d kernel (CPU emulation, float16) vs float32 ref: {err16:.2e}')
    assert y16.dtype == torch.float16 and err16 < 1e-2

#----------------------------------------------------------------------------
# Real CUDA builds and GPU numerics.

@pytest.mark.cuda_build
@pytest.mark.parametrize('name,entry', [('bias_act', 'bias_act'), ('upfirdn2d', 'upfirdn2d')])
def test_cuda_plugin_builds(name, entry, monkeypatch):
    if torch.version.cuda is None:
        pytest.skip('this PyTorch build has no CUDA support')
    monkeypatch.setenv('TORCH_CUDA_ARCH_LIST', os.environ.get('TORCH_CUDA_ARCH_LIST') or '8.0')   # No device to detect.
    monkeypatch.setattr(custom_ops, '_cached_plugins', {})
    module = custom_ops.get_plugin(f'{name}_plugin_buildtest', [f'{name}.cpp', f'{name}.cu'], headers=[f'{name}.h'],
        source_dir=OPS_DIR, extra_cuda_cflags=['--use_fast_math'])
    assert callable(getattr(module, entry))
    assert os.path.isfile(module.__file__)

@pytest.mark.gpu
def test_bias_act_cuda_vs_ref_gpu():
    torch.manual_seed(0)
    for act, spec in bias_act.activation_funcs.items():
        for dtype, tol in [(torch.float32, 1e-5), (torch.float64, 1e-12)]:
            x = torch.randn([4, 8, 6, 6], device='cuda', dtype=dtype, requires_grad=True)
            b = torch.randn([8], device='cuda', dtype=dtype, requires_grad=True)
            y = bias_act.bias_act(x, b, act=act, clamp=2.0, impl='cuda')
            r = bias_act.bias_act(x, b, act=act, clamp=2.0, impl='ref')
            assert (y - r).abs().max().item() < tol
            dy = torch.randn_like(y)
            g = torch.autograd.grad(y, [x, b], dy, create_graph=True)
            gr = torch.autograd.grad(r, [x, b], dy, create_graph=True)
            assert max((u - v).abs().max().item() for u, v in zip(g, gr)) < tol * 10
            if spec.has_2nd_grad:
                g2 = torch.autograd.grad(g[0].square().sum(), [x, b])
                gr2 = torch.autograd.grad(gr[0].square().sum(), [x, b])
                assert max((u - v).abs().max().item() for u, v in zip(g2, gr2)) < tol * 100

@pytest.mark.gpu
def test_upfirdn2d_cuda_vs_ref_gpu():
    torch.manual_seed(0)
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device=torch.device('cuda'))
    for up, down, padding in [(1, 1, 1), (2, 1, [2, 1, 2, 1]), (1, 2, 1), (3, 2, [0, 1, 2, 3])]:
        x = torch.randn([2, 5, 16, 16], device='cuda', dtype=torch.float64, requires_grad=True)
        y = upfirdn2d.upfirdn2d(x, f, up=up, down=down, padding=padding, impl='cuda')
        r = upfirdn2d.upfirdn2d(x, f, up=up, down=down, padding=padding, impl='ref')
        assert (y - r).abs().max().item() < 1e-6
        dy = torch.randn_like(y)
        g, = torch.autograd.grad(y, x, dy, create_graph=True)
        gr, = torch.autograd.grad(r, x, dy, create_graph=True)
        assert (g - gr).abs().max().item() < 1e-6

#----------------------------------------------------------------------------
