"""Training throughput of the toolkit's loop: images/s with 1 process vs 2 processes (gloo),
seconds per GradStyle training step with peak memory for the tiny and 256 configurations, and
encoder-training (gradstyle-train-encoder) steps/s with peak memory for `small` @32 and `e4e` @256.

Usage:
    python benchmarks/bench_train.py [--cfg tiny] [--kimg-short 0.032] [--kimg-long 0.288]
    python benchmarks/bench_train.py --gradstyle [--gradstyle-configs tiny,256] [--steps 2]
    python benchmarks/bench_train.py --encoder [--encoder-configs small32,e4e256] [--steps 2]

Each configuration trains twice (a short and a long run, same settings, no snapshots); the
throughput is (long - short images) / (long - short seconds), so start-up time cancels out. On a
CPU machine the 1-process run uses all cores as torch threads and the 2-process run one thread per
process; on CUDA each process takes one GPU.
"""

import argparse
import os
import tempfile
import time

import numpy as np
import PIL.Image
import torch

from stylegan2_ada_pytorch import dnnlib
from stylegan2_ada_pytorch.cli import train as train_cli
from stylegan2_ada_pytorch.torch_utils import training_stats
from stylegan2_ada_pytorch.training import training_loop

#----------------------------------------------------------------------------


def time_steps(step, steps):
    """(seconds per step after one warm-up step, peak RSS in GiB of this process; Linux reports KiB)."""
    import resource     # POSIX only; imported here as before so the module imports everywhere
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

def make_folder(root, count=64, res=32):
    rnd = np.random.RandomState(0)
    yy, xx = np.mgrid[0:res, 0:res] / (res - 1)
    for i in range(count):
        base = np.stack([np.sin(xx * rnd.uniform(1, 8)), yy * rnd.uniform(), xx * yy], axis=2)
        img = ((base - base.min()) / (np.ptp(base) + 1e-8) * 255).astype(np.uint8)
        PIL.Image.fromarray(img).save(os.path.join(root, f'{i:03d}.png'))

def loop_kwargs(data, run_dir, cfg, num_gpus, kimg):
    _desc, args = train_cli.setup_training_loop_kwargs(data=data, cfg=cfg, gpus=num_gpus, aug='noaug', workers=0, fp32=True)
    args.pop('num_gpus')
    args.update(run_dir=run_dir, total_kimg=kimg, image_snapshot_ticks=None, network_snapshot_ticks=None, kimg_per_tick=1000)
    return args

def _worker(rank, args, num_gpus, init_file, threads, result_file):
    torch.set_num_threads(threads)
    if num_gpus > 1:
        backend = 'nccl' if torch.cuda.is_available() else 'gloo'
        torch.distributed.init_process_group(backend=backend, init_method=f'file://{init_file}', rank=rank, world_size=num_gpus)
        training_stats.init_multiprocessing(rank=rank, sync_device=torch.device('cpu') if backend == 'gloo' else torch.device('cuda', rank))
    start = time.perf_counter()
    training_loop.training_loop(rank=rank, num_gpus=num_gpus, **args)
    elapsed = time.perf_counter() - start
    if rank == 0:
        with open(result_file, 'w') as f:
            f.write(str(elapsed))
    if num_gpus > 1:
        torch.distributed.destroy_process_group()

def timed_run(data, cfg, num_gpus, kimg, tmp):
    run_dir = tempfile.mkdtemp(dir=tmp)
    args = loop_kwargs(data, run_dir, cfg, num_gpus, kimg)
    result_file = os.path.join(run_dir, 'elapsed.txt')
    threads = max(os.cpu_count() // num_gpus, 1) if not torch.cuda.is_available() else torch.get_num_threads()
    if num_gpus == 1:
        _worker(0, args, 1, None, threads, result_file)
    else:
        torch.multiprocessing.spawn(_worker, args=(args, num_gpus, os.path.join(run_dir, '.init'), threads, result_file), nprocs=num_gpus)
    return float(open(result_file).read()), int(round(kimg * 1000 / args.batch_size)) * args.batch_size

#----------------------------------------------------------------------------
# GradStyle: seconds per training step (G phase + D phase) and peak memory, one subprocess per config.

def _gradstyle_nets(config):
    from stylegan2_ada_pytorch import testing
    from stylegan2_ada_pytorch.networks import Discriminator, Generator
    from gradstyle_plugin import attach
    from gradstyle_plugin import encoder as encoder_module
    torch.manual_seed(0)
    if config == 'tiny':
        G0, D = testing.tiny_generator(), testing.tiny_discriminator()
        E = dnnlib.util.construct_class_by_name(**encoder_module.small_encoder_kwargs(32, w_dim=32, feature_channels=32))
        return attach.attach(G0, preset='tiny'), D, E, 32, 4
    res = int(config)
    G0 = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3, mapping_kwargs=dict(num_layers=8),
        synthesis_kwargs=dict(channel_base=16384, channel_max=512, num_fp16_res=4, conv_clamp=256)).eval().requires_grad_(False)
    D = Discriminator(c_dim=0, img_resolution=res, img_channels=3, channel_base=16384, channel_max=512, num_fp16_res=4,
        conv_clamp=256).eval().requires_grad_(False)
    E = dnnlib.util.construct_class_by_name(**encoder_module.e4e_encoder_kwargs(num_ws=G0.num_ws))
    return attach.attach(G0, preset='paper'), D, E, res, 1

def _gradstyle_worker(config, steps, result_file):
    from gradstyle_plugin.loss import GradStyleLoss
    G, D, E, res, batch = _gradstyle_nets(config)
    G.train()
    E = E.eval().requires_grad_(False)
    loss = GradStyleLoss(device=torch.device('cpu'), G_mapping=G.mapping, G_synthesis=G.synthesis, D=D, encoder=E,
        lpips_weights='random')
    params = [p for n, p in G.named_parameters() if n.startswith('synthesis.injectors.')]
    real = torch.rand([batch, 3, res, res]) * 2 - 1
    def step():
        for p in params:
            p.requires_grad_(True)
        loss.accumulate_gradients('Gboth', real, None, None, None, True, 1)
        for p in params:
            p.requires_grad_(False)
        D.requires_grad_(True)
        loss.accumulate_gradients('Dmain', real, None, None, None, True, 1)
        D.requires_grad_(False)
    seconds, peak_gib = time_steps(step, steps)
    with open(result_file, 'w') as f:
        f.write(f'{seconds} {peak_gib} {batch}')

def bench_gradstyle(configs, steps):
    for config in configs:
        with tempfile.TemporaryDirectory() as tmp:
            result_file = os.path.join(tmp, 'result.txt')
            ctx = torch.multiprocessing.get_context('spawn')
            proc = ctx.Process(target=_gradstyle_worker, args=(config, steps, result_file))
            proc.start()
            proc.join()
            seconds, peak, batch = open(result_file).read().split()
        print(f'GradStyle {config:>5s}: {float(seconds):7.2f} s per training step (batch {batch}, G + D phase), '
              f'peak memory {float(peak):5.2f} GiB')

#----------------------------------------------------------------------------
# Encoder training: steps/s (latent_D phase + encoder phase, LPIPS on) and peak memory, one subprocess per config.

ENCODER_CONFIGS = dict(small32=('small', 32, 8), e4e256=('e4e', 256, 2))    # preset, generator resolution, batch

def _encoder_worker(config, steps, result_file):
    from stylegan2_ada_pytorch import testing
    from stylegan2_ada_pytorch.networks import Generator
    from gradstyle_plugin.encoder_loss import E4EEncoderLoss
    from gradstyle_plugin.encoder_train_config import encoder_preset_kwargs
    from gradstyle_plugin.latent_discriminator import LatentDiscriminator
    preset, res, batch = ENCODER_CONFIGS[config]
    torch.manual_seed(0)
    if res == 32:
        G = testing.tiny_generator(img_channels=1)
    else:
        G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3, mapping_kwargs=dict(num_layers=8),
            synthesis_kwargs=dict(channel_base=16384, channel_max=512, num_fp16_res=4, conv_clamp=256)).eval().requires_grad_(False)
    E = dnnlib.util.construct_class_by_name(**encoder_preset_kwargs(preset, G)).requires_grad_(False)
    latent_D = LatentDiscriminator(G.w_dim).requires_grad_(False)
    loss = E4EEncoderLoss(device=torch.device('cpu'), G_mapping=G.mapping, G_synthesis=G.synthesis, D=None, encoder=E,
        latent_D=latent_D, lpips_weights='random', progressive_start=None)
    real = torch.rand([batch, G.img_channels, res, res]) * 2 - 1
    z = torch.randn([batch, G.z_dim])
    def step():
        for phase, module in [('latent_Dmain', latent_D), ('encoderboth', E)]:
            module.requires_grad_(True)
            loss.accumulate_gradients(phase, real, None, z, None, True, 1)
            module.requires_grad_(False)
    seconds, peak_gib = time_steps(step, steps)
    params = sum(p.numel() for p in E.parameters())
    with open(result_file, 'w') as f:
        f.write(f'{seconds} {peak_gib} {batch} {params}')

def bench_encoder(configs, steps):
    for config in configs:
        with tempfile.TemporaryDirectory() as tmp:
            result_file = os.path.join(tmp, 'result.txt')
            proc = torch.multiprocessing.get_context('spawn').Process(target=_encoder_worker, args=(config, steps, result_file))
            proc.start()
            proc.join()
            seconds, peak, batch, params = open(result_file).read().split()
        print(f'encoder {config:>8s}: {1 / float(seconds):7.3f} steps/s ({float(seconds):.2f} s per step, batch {batch}, '
              f'latent_D + encoder phase, LPIPS on; {int(params) / 1e6:.2f}M encoder parameters), peak memory {float(peak):5.2f} GiB')

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--cfg', default='tiny')
    parser.add_argument('--kimg-short', type=float, default=0.032)
    parser.add_argument('--kimg-long', type=float, default=0.288)
    parser.add_argument('--gradstyle', action='store_true', help='benchmark GradStyle training steps instead')
    parser.add_argument('--gradstyle-configs', default='tiny,256')
    parser.add_argument('--encoder', action='store_true', help='benchmark encoder-training steps instead')
    parser.add_argument('--encoder-configs', default='small32,e4e256')
    parser.add_argument('--steps', type=int, default=2)
    opts = parser.parse_args()
    if opts.encoder:
        bench_encoder(opts.encoder_configs.split(','), opts.steps)
        return
    if opts.gradstyle:
        bench_gradstyle(opts.gradstyle_configs.split(','), opts.steps)
        return
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, 'data')
        os.makedirs(data)
        make_folder(data)
        rates = {}
        timed_run(data, opts.cfg, 1, opts.kimg_short, tmp)   # warm-up: first-call costs of this process
        for num_gpus in (1, 2):
            t_short, n_short = timed_run(data, opts.cfg, num_gpus, opts.kimg_short, tmp)
            t_long, n_long = timed_run(data, opts.cfg, num_gpus, opts.kimg_long, tmp)
            rates[num_gpus] = (n_long - n_short) / max(t_long - t_short, 1e-9)
            print(f'{num_gpus} process(es): {rates[num_gpus]:7.1f} images/s  ({n_long - n_short} images in {t_long - t_short:.1f} s, cfg={opts.cfg})')
        print(f'speed-up 2 vs 1 processes: {rates[2] / rates[1]:.2f}x')

if __name__ == '__main__':
    main()

#----------------------------------------------------------------------------
