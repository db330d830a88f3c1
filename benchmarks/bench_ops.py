"""Time the custom ops at StyleGAN2-typical sizes: reference (PyTorch) path, and the CUDA path if present.

Reports milliseconds per call (best of --reps) for forward and forward+backward of
`bias_act` (lrelu, bias, clamp), `upsample2d`/`downsample2d` ([1,3,3,1]) and `conv2d_resample`
(3x3 up/down, 1x1 down). For conv2d_resample it also times the literal composition of the
definition (zero-insert, pad, FIR at the high resolution, then the conv) to show what the fast
paths save.

Usage:
    python benchmarks/bench_ops.py                   # CPU, a few seconds
    python benchmarks/bench_ops.py --res 128 --ch 256 --reps 10
"""

import time

import click
import torch
import torch.nn.functional as F

from stylegan2_ada_pytorch.torch_utils.ops import bias_act, conv2d_resample, upfirdn2d

#----------------------------------------------------------------------------

def best_ms(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3

def fwd_bwd(op, x):
    def run():
        x.grad = None
        op(x).sum().backward()
    return run

def literal_conv2d_resample(x, w, f, up, down, padding):
    """The definition step by step (spec 5.2), for comparison only."""
    pad = conv2d_resample._total_padding(f, up, down, padding)
    x = upfirdn2d.upfirdn2d(x, f if up > 1 else None, up=up, padding=pad, gain=up ** 2, impl='ref')
    x = F.conv2d(x, w)
    return upfirdn2d.upfirdn2d(x, f, down=down, impl='ref') if down > 1 else x

#----------------------------------------------------------------------------

@click.command()
@click.option('--res', type=int, default=64, help='Feature map resolution')
@click.option('--ch', type=int, default=128, help='Channels')
@click.option('--batch', type=int, default=4, help='Batch size')
@click.option('--reps', type=int, default=5, help='Timed repetitions (best is reported)')
def main(res, ch, batch, reps):
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    impls = ['ref', 'cuda'] if device.type == 'cuda' else ['ref']
    x = torch.randn([batch, ch, res, res], device=device, requires_grad=True)
    b = torch.randn([ch], device=device)
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device=device)
    print(f'device={device.type} batch={batch} ch={ch} res={res}')

    for impl in impls:
        ops = {
            'bias_act lrelu+clamp': lambda t: bias_act.bias_act(t, b, act='lrelu', clamp=256, impl=impl),
            'upsample2d x2': lambda t: upfirdn2d.upsample2d(t, f, impl=impl),
            'downsample2d /2': lambda t: upfirdn2d.downsample2d(t, f, impl=impl),
        }
        for name, op in ops.items():
            fwd = best_ms(lambda: op(x.detach()), reps)
            both = best_ms(fwd_bwd(op, x), reps)
            print(f'  [{impl:4s}] {name:24s} fwd {fwd:8.2f} ms   fwd+bwd {both:8.2f} ms')

    for up, down, k in [(2, 1, 3), (1, 2, 3), (1, 2, 1)]:
        w = torch.randn([ch, ch, k, k], device=device)
        fast = best_ms(lambda: conv2d_resample.conv2d_resample(x.detach(), w, f=f, up=up, down=down, padding=k // 2), reps)
        slow = best_ms(lambda: literal_conv2d_resample(x.detach(), w, f, up, down, k // 2), reps)
        print(f'  conv2d_resample {k}x{k} up={up} down={down}: {fast:8.2f} ms (literal definition {slow:8.2f} ms)')

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()
