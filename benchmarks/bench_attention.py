"""Selective Attention (GradStyle section 3.3, eq. 9) on the CPU: ours vs dense SDPA vs brute force.

At batch 1, 8 heads, d_k = 64, mu = 0.5 and L = Lq = Lk in (256, 1024, 4096) (4096 = a 64x64
stage), for the forward pass (under no_grad) and forward + backward:

- time: best of `--reps` calls, the three methods called alternately in one run;
- peak memory: growth of the peak resident set size (Linux VmHWM) over one call, measured in a
  fresh subprocess per (method, L, pass) after a warm-up call, with the peak reset through
  /proc/self/clear_refs and MALLOC_MMAP_THRESHOLD_=65536 so that freed large blocks return to the
  OS. It counts everything the call allocates (outputs, gradients, buffers), not the inputs.

Methods: 'ours' = `selective_attention` (impl='auto': the fused C++ op if it builds);
'sdpa' = torch.nn.functional.scaled_dot_product_attention (dense, mu = 1, the speed yardstick);
'brute' = `selective_attention_reference(..., selection='topk')`, the straightforward full score
tensor + topk implementation. Goals: ours <= 1.5x sdpa time and <= 1/4 of brute memory at 4096.

Usage:
    python benchmarks/bench_attention.py                 # about 2-3 minutes on 2 idle CPU cores
    python benchmarks/bench_attention.py --sizes 256,1024 --reps 5
"""

import os
import subprocess
import sys
import time

import click
import torch
import torch.nn.functional as F

from gradstyle_plugin import selective_attention as sa

HEADS, DIM, MU = 8, 64, 0.5
METHODS = ('ours', 'sdpa', 'brute')

#----------------------------------------------------------------------------

def make_inputs(L, requires_grad, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn([1, HEADS, L, DIM], generator=gen).requires_grad_(requires_grad) for _ in range(3)]

def make_call(method, L, backward):
    """A closure running one forward (or forward + backward) of `method` on fixed inputs."""
    q, k, v = make_inputs(L, requires_grad=backward)
    fn = {
        'ours':  lambda: sa.selective_attention(q, k, v, MU),
        'sdpa':  lambda: F.scaled_dot_product_attention(q, k, v),
        'brute': lambda: sa.selective_attention_reference(q, k, v, MU, selection='topk'),
    }[method]
    if backward:
        return lambda: fn().sum().backward()
    def forward_only():
        with torch.no_grad():
            fn()
    return forward_only

#----------------------------------------------------------------------------

def time_methods(L, backward, reps, brute_reps):
    """Best wall time (s) per method; methods alternate within each repetition."""
    calls = {m: make_call(m, L, backward) for m in METHODS}
    best = {m: float('inf') for m in METHODS}
    for rep in range(reps + 1):                     # Repetition 0 is the warm-up.
        for m in METHODS:
            if m == 'brute' and rep > brute_reps:
                continue
            t0 = time.perf_counter()
            calls[m]()
            elapsed = time.perf_counter() - t0
            if rep > 0 or (m == 'brute' and brute_reps == 0):
                best[m] = min(best[m], elapsed)
    return best

def _status_bytes(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f'bench_attention: {field} not found in /proc/self/status')

def peak_growth_here(method, L, backward):
    """Peak RSS growth (bytes) of one call in this process, after a warm-up call (Linux only)."""
    call = make_call(method, L, backward)
    call()
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')                                # Reset VmHWM to the current RSS.
    base = _status_bytes('VmRSS:')
    call()
    return _status_bytes('VmHWM:') - base

def peak_growth(method, L, backward):
    """`peak_growth_here` in a fresh subprocess (so earlier runs cannot hide or inflate the peak)."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536')
    cmd = [sys.executable, os.path.abspath(__file__), '--peak-of', f'{method},{L},{int(backward)}']
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1])

#----------------------------------------------------------------------------

def report(L, backward, reps, brute_reps, measure_memory):
    times = time_methods(L, backward, reps, brute_reps)
    mem = {m: peak_growth(m, L, backward) for m in METHODS} if measure_memory else None
    label = 'fwd+bwd' if backward else 'fwd    '
    line = (f'L={L:5d} {label} time ms: ours {times["ours"] * 1e3:8.1f}  sdpa {times["sdpa"] * 1e3:8.1f}  '
        f'brute {times["brute"] * 1e3:9.1f} | ours/sdpa {times["ours"] / times["sdpa"]:5.2f}x  '
        f'ours/brute {times["ours"] / times["brute"]:5.3f}x')
    if mem is not None:
        mib = {m: mem[m] / 2**20 for m in METHODS}
        line += (f' || peak MiB: ours {mib["ours"]:7.1f}  sdpa {mib["sdpa"]:7.1f}  brute {mib["brute"]:8.1f} | '
            f'ours/brute {mem["ours"] / max(mem["brute"], 1):5.3f}  ours/sdpa {mem["ours"] / max(mem["sdpa"], 1):5.2f}')
    print(line, flush=True)

@click.command()
@click.option('--sizes', default='256,1024,4096', show_default=True, help='Comma-separated L values.')
@click.option('--reps', default=3, show_default=True, type=click.IntRange(min=1), help='Timed repetitions per method.')
@click.option('--brute-reps', default=0, show_default=True, type=click.IntRange(min=0), help='Timed repetitions of brute force at L >= 4096 (0: time its warm-up call).')
@click.option('--no-memory', is_flag=True, help='Skip the peak memory subprocesses.')
@click.option('--peak-of', default=None, hidden=True, help='Internal: METHOD,L,BACKWARD -> print peak growth in bytes.')
def main(sizes, reps, brute_reps, no_memory, peak_of):
    """Time and peak memory of selective attention vs dense SDPA vs brute force."""
    if peak_of is not None:
        method, L, backward = peak_of.split(',')
        print(peak_growth_here(method, int(L), bool(int(backward))))
        return
    try:
        sizes = [int(s) for s in sizes.split(',')]
    except ValueError:
        raise click.BadParameter(f'expected comma-separated integers, got {sizes!r}', param_hint='--sizes')
    measure_memory = not no_memory and sys.platform.startswith('linux')
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, heads={HEADS}, d={DIM}, mu={MU}, batch 1; '
        f'ours = {"C++ op" if sa._init() else "PyTorch fallback"}; peak memory = RSS high-water growth per call '
        f'({"subprocess per cell" if measure_memory else "not measured"})')
    for L in sizes:
        for backward in (False, True):
            report(L, backward, reps, brute_reps if L >= 4096 else reps, measure_memory)

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()

#----------------------------------------------------------------------------
