"""CPU time per generated image, and the cost of an empty injection hook.

Builds generators with random weights (no downloads) and times `G.synthesis(ws, noise_mode='const')`
at batch 1:

- 256x256, config A (channel_base 32768, fp32) and B (train.py paper256: channel_base 16384,
  fp16 on the top 4 resolutions, which run in fp32 on the CPU automatically);
- 1024x1024 (channel_base 32768, fp16 top 4 / conv_clamp 256, fp32 on the CPU);
- the hook cost: the same network with a no-op `Injector` at every stage against none, timed
  alternately in one run on one thread (best call of each), reported as a ratio (1.00 = free):
  on the tiny 32x32 test generator, where the hook's fixed cost is the largest share, and on
  256-B; plus the injection bookkeeping alone in microseconds per forward.

Usage:
    python benchmarks/bench_synthesis.py               # about a minute on 2 idle CPU cores
    python benchmarks/bench_synthesis.py --reps 5 --skip-1024
"""

import statistics
import time

import click
import torch

from stylegan2_ada_pytorch import dnnlib, injection, networks, testing

#----------------------------------------------------------------------------

CONFIGS = {
    '256-A': dict(z_dim=512, w_dim=512, c_dim=0, img_resolution=256, img_channels=3, mapping_kwargs=dict(num_layers=8),
        synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=0, conv_clamp=None)),
    '256-B': dict(z_dim=512, w_dim=512, c_dim=0, img_resolution=256, img_channels=3, mapping_kwargs=dict(num_layers=8),
        synthesis_kwargs=dict(channel_base=16384, channel_max=512, num_fp16_res=4, conv_clamp=256)),
    '1024': dict(z_dim=512, w_dim=512, c_dim=0, img_resolution=1024, img_channels=3, mapping_kwargs=dict(num_layers=8),
        synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256)),
}

def build(kwargs, with_noop_injectors=False):
    kwargs = dnnlib.EasyDict(kwargs, synthesis_kwargs=dnnlib.EasyDict(kwargs['synthesis_kwargs']))
    if with_noop_injectors:
        stages = injection.stage_names(kwargs['img_resolution'])
        kwargs.synthesis_kwargs.injector_kwargs = {s: [injection.injector_spec('stylegan2_ada_pytorch.injection.Injector')] for s in stages}
    torch.manual_seed(0)
    return networks.Generator(**kwargs).eval().requires_grad_(False)

def time_call(fn, reps):
    """-> (wall seconds, process CPU seconds) per call, medians over `reps` calls after a warm-up."""
    fn()
    wall, cpu = [], []
    for _ in range(reps):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)

def synth_fn(G, ws):
    return lambda: G.synthesis(ws, noise_mode='const')

def hook_ratio(G_plain, G_hooked, ws, reps):
    # Alternate the two networks call by call, so that changes in machine load hit both equally,
    # on one thread, and keep the best call of each (the one least disturbed by other processes).
    num_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        plain_fn, hooked_fn = synth_fn(G_plain, ws), synth_fn(G_hooked, ws)
        plain_fn()
        hooked_fn()
        plain, hooked = [], []
        for _ in range(reps):
            for fn, out in ((plain_fn, plain), (hooked_fn, hooked)):
                start = time.perf_counter()
                fn()
                out.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(num_threads)
    return min(plain), min(hooked)

#----------------------------------------------------------------------------

@click.command()
@click.option('--reps',         help='Timed repetitions per measurement', metavar='INT', type=click.IntRange(min=1), default=2, show_default=True)
@click.option('--hook-reps',    help='Alternating repetitions for the hook ratio', metavar='INT', type=click.IntRange(min=1), default=6, show_default=True)
@click.option('--skip-1024',    help='Leave out the 1024x1024 generator', is_flag=True)
@click.option('--threads',      help='torch.set_num_threads (0 = leave as is)', metavar='INT', type=click.IntRange(min=0), default=0, show_default=True)
def main(reps, hook_reps, skip_1024, threads):
    """Time G.synthesis per image on the CPU and the overhead of no-op injectors."""
    if threads:
        torch.set_num_threads(threads)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1, noise_mode=const, median of {reps}')
    torch.manual_seed(1)
    with torch.no_grad():
        for name, kwargs in CONFIGS.items():
            if skip_1024 and name == '1024':
                continue
            G = build(kwargs)
            ws = G.mapping(torch.randn([1, G.z_dim]), None)
            wall, cpu = time_call(synth_fn(G, ws), reps)
            print(f'{name:>6}: {wall:7.3f} s/image wall, {cpu:7.3f} s/image process CPU time')

        for name, kwargs in [('tiny', testing.TINY_G_KWARGS), ('256-B', CONFIGS['256-B'])]:
            G_plain, G_hooked = build(kwargs), build(kwargs, with_noop_injectors=True)
            ws = G_plain.mapping(torch.randn([1, G_plain.z_dim]), None)
            plain, hooked = hook_ratio(G_plain, G_hooked, ws, hook_reps if name != 'tiny' else 300)
            stages = len(G_hooked.synthesis.stages)
            print(f'hook cost {name:>6}: no-op Injector at {stages} stages {hooked * 1e3:8.2f} ms vs none {plain * 1e3:8.2f} ms (best call, 1 thread) '
                f'-> ratio {hooked / plain:.3f}')
        print(f'host bookkeeping per forward (tiny G, 4 no-op injectors): {bookkeeping_us():.1f} us')

def bookkeeping_us(calls=2000):
    # The injection machinery alone: building the call plan and running + checking no-op injectors.
    G = build(testing.TINY_G_KWARGS, with_noop_injectors=True)
    x, img, ws = torch.zeros(1, 8, 32, 32), torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32)
    start = time.perf_counter()
    for _ in range(calls):
        plan = G.synthesis._injector_plan()
        for stage, chain in plan.items():
            networks._run_injectors(stage, chain, x, img, ws, {})
    return (time.perf_counter() - start) / calls * 1e6

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()

#----------------------------------------------------------------------------
