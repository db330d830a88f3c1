"""Cost of one GradStyle edit (encode + reconstruction stream + editing stream) relative to
encode + two plain syntheses (what an e4e edit costs: reconstruction + edit), on CPU.

Usage:
    python benchmarks/bench_edit.py [--configs 256,1024] [--reps 2] [--preset paper]

Random weights; batch 1; noise_mode='const'; timings are medians over --reps after one warm-up,
all measured in this run. Goal: ratio <= 1.25.
"""

import argparse
import time

import torch

from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch.networks import Generator
from gradstyle_plugin import attach, streams
from gradstyle_plugin import encoder as encoder_module

#----------------------------------------------------------------------------

def build(res, preset):
    torch.manual_seed(0)
    G0 = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3, mapping_kwargs=dict(num_layers=8),
        synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=0)).eval().requires_grad_(False)
    G = attach.attach(G0, preset=preset)
    E = dnnlib.util.construct_class_by_name(**encoder_module.e4e_encoder_kwargs(num_ws=G0.num_ws)).eval().requires_grad_(False)
    return G0, G, E

def median_time(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]

@torch.no_grad()
def measure(res, preset, reps):
    G0, G, E = build(res, preset)
    img = torch.rand([1, 3, 256, 256]) * 2 - 1
    direction = torch.randn([1, 512])
    def e4e_edit():
        ws, _feats = E(img)
        G0.synthesis(ws, noise_mode='const')
        G0.synthesis(ws + direction, noise_mode='const')
    def gradstyle_edit():
        streams.run_streams(G, E, img, direction=direction, alpha=1.0)
    t_base = median_time(e4e_edit, reps)
    t_gs = median_time(gradstyle_edit, reps)
    print(f'{res:5d} px: encode + 2 syntheses {t_base:6.2f} s, GradStyle edit {t_gs:6.2f} s, ratio {t_gs / t_base:5.2f}x (goal <= 1.25x)')

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--configs', default='256,1024')
    parser.add_argument('--reps', type=int, default=2)
    parser.add_argument('--preset', default='paper')
    opts = parser.parse_args()
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, preset {opts.preset}')
    for res in [int(r) for r in opts.configs.split(',')]:
        measure(res, opts.preset, opts.reps)

if __name__ == '__main__':
    main()

#----------------------------------------------------------------------------
