"""Cost of one GradStyle edit (encode + reconstruction stream + editing stream) relative to
encode + two plain syntheses (what an e4e edit costs: reconstruction + edit), on CPU, for each
preset.

Usage:
    python benchmarks/bench_edit.py [--configs 256,1024] [--reps 2] [--presets fast,paper]

Random weights; batch 1; noise_mode='const'; timings are medians over --reps after one warm-up,
all measured in this run, the reps of every variant interleaved (a change in machine load then
affects every ratio alike). Goal: `fast` <= 1.25x at 256 and 1024. `paper` (c-wide GRM and gate,
K = c = 512) is measured and reported; it has no speed goal (its widths follow the paper's
reading, not a budget). The parameter counts per stage are printed next to the times.
"""

import argparse
import functools
import time

import torch

from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch.networks import Generator
from gradstyle_plugin import attach, streams
from gradstyle_plugin import encoder as encoder_module

GOALS = {'fast': 1.25}

#----------------------------------------------------------------------------

def build_base(res):
    torch.manual_seed(0)
    G0 = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3, mapping_kwargs=dict(num_layers=8),
        synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=0)).eval().requires_grad_(False)
    E = dnnlib.util.construct_class_by_name(**encoder_module.e4e_encoder_kwargs(num_ws=G0.num_ws)).eval().requires_grad_(False)
    return G0, E

def interleaved_medians(fns, reps):
    """{name: median seconds} of each callable, after one warm-up each; the reps run in turn (base, fast,
    paper, base, ...) so that a change in machine load affects every ratio alike."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}

def stage_params(G):
    stage = next(iter(attach.stage_modules(G).values()))
    count = lambda m: sum(p.numel() for p in m.parameters()) / 1e6
    return f'per stage: GRM {count(stage.grm):.1f}M, gate {count(stage.gate):.1f}M, Aligner {count(stage.aligner):.1f}M'

@torch.no_grad()
def measure(res, presets, reps):
    G0, E = build_base(res)
    img = torch.rand([1, 3, 256, 256]) * 2 - 1
    direction = torch.randn([1, 512])
    def e4e_edit():
        ws, _feats = E(img)
        G0.synthesis(ws, noise_mode='const')
        G0.synthesis(ws + direction, noise_mode='const')
    nets = {preset: attach.attach(G0, preset=preset) for preset in presets}
    fns = dict(base=e4e_edit, **{preset: functools.partial(streams.run_streams, G, E, img, direction=direction, alpha=1.0)
        for preset, G in nets.items()})
    times = interleaved_medians(fns, reps)
    t_base = times['base']
    print(f'{res:5d} px: encode + 2 syntheses {t_base:6.2f} s')
    for preset, G in nets.items():
        t_gs = times[preset]
        goal = f'goal <= {GOALS[preset]:.2f}x: {"met" if t_gs / t_base <= GOALS[preset] else "MISSED"}' if preset in GOALS else 'no goal'
        print(f'{"":9s}{preset:6s} GradStyle edit {t_gs:6.2f} s, ratio {t_gs / t_base:5.2f}x ({goal}); {stage_params(G)}')

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--configs', default='256,1024')
    parser.add_argument('--reps', type=int, default=2)
    parser.add_argument('--presets', default='fast,paper')
    opts = parser.parse_args()
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads')
    for res in [int(r) for r in opts.configs.split(',')]:
        measure(res, opts.presets.split(','), opts.reps)

if __name__ == '__main__':
    main()

#----------------------------------------------------------------------------
