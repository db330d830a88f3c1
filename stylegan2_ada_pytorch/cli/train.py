"""`stylegan2-train`: train a StyleGAN2 generator with ADA (the toolkit's train.py, same flags).

The configuration is built by the pure function `setup_training_loop_kwargs(**opts)`; the click
command only parses options, calls it, and hands the run to `training.launch` (one process, `--gpus N`
processes on this machine, or the processes torchrun started on one or several machines).
"""

import json
import os

import click
import torch

from .. import dnnlib
from ..dnnlib import UserError
from ..training import launch
from ..training.launch import next_run_dir  # noqa: F401  (kept importable from here for older callers)

#----------------------------------------------------------------------------
# Base configurations: ref_gpus, kimg, mb, mbstd, fmaps, lrate, gamma, ema, ramp, map.

cfg_specs = {
    'auto':      dict(ref_gpus=-1, kimg=25000,  mb=-1, mbstd=-1, fmaps=-1,  lrate=-1,     gamma=-1,   ema=-1,  ramp=0.05, map=2),
    'stylegan2': dict(ref_gpus=8,  kimg=25000,  mb=32, mbstd=4,  fmaps=1,   lrate=0.002,  gamma=10,   ema=10,  ramp=None, map=8),
    'paper256':  dict(ref_gpus=8,  kimg=25000,  mb=64, mbstd=8,  fmaps=0.5, lrate=0.0025, gamma=1,    ema=20,  ramp=None, map=8),
    'paper512':  dict(ref_gpus=8,  kimg=25000,  mb=64, mbstd=8,  fmaps=1,   lrate=0.0025, gamma=0.5,  ema=20,  ramp=None, map=8),
    'paper1024': dict(ref_gpus=8,  kimg=25000,  mb=32, mbstd=4,  fmaps=1,   lrate=0.002,  gamma=2,    ema=10,  ramp=None, map=8),
    'cifar':     dict(ref_gpus=2,  kimg=100000, mb=64, mbstd=32, fmaps=1,   lrate=0.0025, gamma=0.01, ema=500, ramp=0.05, map=2),
    # Ours: a small network for CPUs; one kimg at 32x32 takes seconds on 2 cores.
    'tiny':      dict(ref_gpus=1,  kimg=200,    mb=16, mbstd=4,  fmaps=1/64, lrate=0.0025, gamma=0.1, ema=2,   ramp=0.05, map=2, zw=64, cmax=64),
    # Ours: about 20x tiny's parameters; gives recognisable Fashion-MNIST garments at 32x32 on CPUs (the demo bundle).
    'small':     dict(ref_gpus=1,  kimg=2000,   mb=32, mbstd=4,  fmaps=1/32, lrate=0.0025, gamma=0.05, ema=5,  ramp=0.05, map=2, zw=128, cmax=128),
}

augpipe_specs = {
    'blit':   dict(xflip=1, rotate90=1, xint=1),
    'geom':   dict(scale=1, rotate=1, aniso=1, xfrac=1),
    'color':  dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1),
    'filter': dict(imgfilter=1),
    'noise':  dict(noise=1),
    'cutout': dict(cutout=1),
    'bg':     dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1),
    'bgc':    dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1),
    'bgcf':   dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1, imgfilter=1),
    'bgcfn':  dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1, imgfilter=1, noise=1),
    'bgcfnc': dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1, imgfilter=1, noise=1, cutout=1),
}

resume_specs = {
    'ffhq256':     'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/ffhq-res256-mirror-paper256-noaug.pkl',
    'ffhq512':     'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/ffhq-res512-mirror-stylegan2-noaug.pkl',
    'ffhq1024':    'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/ffhq-res1024-mirror-stylegan2-noaug.pkl',
    'celebahq256': 'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/celebahq-res256-mirror-paper256-kimg100000-ada-target0.5.pkl',
    'lsundog256':  'https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/lsundog-res256-paper256-kimg100000-noaug.pkl',
}

#----------------------------------------------------------------------------

def _data_config(data, cond, subset, mirror, seed):
    """Training set kwargs, its description and properties (opens the dataset once to check it)."""
    if data is None:
        raise UserError('--data: required')
    if not os.path.exists(data):
        raise UserError(f'--data: no such folder or zip: {data}')
    kwargs = dnnlib.EasyDict(class_name='stylegan2_ada_pytorch.training.dataset.ImageFolderDataset', path=data,
        use_labels=True, max_size=None, xflip=False)
    try:
        dataset = dnnlib.util.construct_class_by_name(**kwargs)
    except IOError as err:
        raise UserError(f'--data: {err}')
    kwargs.resolution = dataset.resolution
    kwargs.use_labels = dataset.has_labels
    kwargs.max_size = len(dataset)
    desc = dataset.name
    if cond:
        if not dataset.has_labels:
            raise UserError('--cond=True requires labels specified in dataset.json')
        desc += '-cond'
    else:
        kwargs.use_labels = False
    if subset is not None:
        if not 1 <= subset <= kwargs.max_size:
            raise UserError(f'--subset must be between 1 and {kwargs.max_size}')
        desc += f'-subset{subset}'
        if subset < kwargs.max_size:
            kwargs.max_size = subset
            kwargs.random_seed = seed
    if mirror:
        desc += '-mirror'
        kwargs.xflip = True
    return kwargs, desc, dataset.resolution

def _network_config(spec, res, gpus):
    """G/D kwargs, optimisers and loss from a base configuration."""
    zw = spec.get('zw', 512)
    cmax = spec.get('cmax', 512)
    channel_base = int(spec['fmaps'] * 32768)
    G_kwargs = dnnlib.EasyDict(class_name='stylegan2_ada_pytorch.networks.Generator', z_dim=zw, w_dim=zw,
        mapping_kwargs=dnnlib.EasyDict(num_layers=spec['map']),
        synthesis_kwargs=dnnlib.EasyDict(channel_base=channel_base, channel_max=cmax, num_fp16_res=4, conv_clamp=256))
    D_kwargs = dnnlib.EasyDict(class_name='stylegan2_ada_pytorch.networks.Discriminator', block_kwargs=dnnlib.EasyDict(),
        mapping_kwargs=dnnlib.EasyDict(), epilogue_kwargs=dnnlib.EasyDict(mbstd_group_size=spec['mbstd']),
        channel_base=channel_base, channel_max=cmax, num_fp16_res=4, conv_clamp=256)
    opt = lambda: dnnlib.EasyDict(class_name='torch.optim.Adam', lr=spec['lrate'], betas=[0, 0.99], eps=1e-8)
    loss_kwargs = dnnlib.EasyDict(class_name='stylegan2_ada_pytorch.training.loss.StyleGAN2Loss', r1_gamma=spec['gamma'])
    return G_kwargs, D_kwargs, opt(), opt(), loss_kwargs

def _base_spec(cfg, res, gpus):
    spec = dnnlib.EasyDict(cfg_specs[cfg])
    if cfg == 'auto':
        spec.ref_gpus = gpus
        spec.mb = max(min(gpus * min(4096 // res, 32), 64), gpus)
        spec.mbstd = min(spec.mb // gpus, 4)
        spec.fmaps = 1 if res >= 512 else 0.5
        spec.lrate = 0.002 if res >= 1024 else 0.0025
        spec.gamma = 0.0002 * (res ** 2) / spec.mb
        spec.ema = spec.mb * 10 / 32
    return spec

#----------------------------------------------------------------------------

def setup_training_loop_kwargs(
    gpus=None, snap=None, metrics=None, seed=None,                          # General options.
    data=None, cond=None, subset=None, mirror=None,                         # Dataset.
    cfg=None, gamma=None, kimg=None, batch=None, batch_gpu=None,            # Base config.
    aug=None, p=None, target=None, augpipe=None,                            # Discriminator augmentation.
    resume=None, freezed=None,                                              # Transfer learning.
    fp32=None, nhwc=None, allow_tf32=None, nobench=None, workers=None,      # Performance options.
    device=None, grid_max=None, inception_weights=None,                     # Ours.
):
    """Build (description, training_loop kwargs) from command-line values. Pure: raises UserError.

    Under torchrun, `gpus` becomes torchrun's WORLD_SIZE (launch.num_processes).
    """
    args = dnnlib.EasyDict()

    gpus = launch.num_processes(gpus)
    args.num_gpus = gpus
    snap = 50 if snap is None else snap
    if snap < 1:
        raise UserError('--snap must be at least 1')
    args.image_snapshot_ticks = snap
    args.network_snapshot_ticks = snap
    metrics = [] if metrics is None else metrics
    from ..metrics import metric_main
    for metric in metrics:
        if not metric_main.is_valid_metric(metric):
            raise UserError(f'--metrics: unknown metric {metric!r} (choose from {", ".join(metric_main.list_valid_metrics())} or none)')
    args.metrics = metrics
    if inception_weights is not None:
        if not os.path.isfile(inception_weights):
            raise UserError(f'--inception-weights: no such file: {inception_weights}')
        args.metric_kwargs = dnnlib.EasyDict(inception_weights=inception_weights)
    elif any(not m.endswith('_pix') for m in metrics):
        raise UserError('--inception-weights: FID/KID metrics need a local Inception-v3 weights file (nothing is downloaded); '
            'pass --inception-weights or use fid2k_pix / kid2k_pix')
    args.random_seed = 0 if seed is None else seed

    args.training_set_kwargs, desc, res = _data_config(data, bool(cond), subset, bool(mirror), args.random_seed)
    args.data_loader_kwargs = dnnlib.EasyDict(pin_memory=torch.cuda.is_available(), num_workers=3 if workers is None else workers,
        prefetch_factor=2)
    if args.data_loader_kwargs.num_workers == 0:
        del args.data_loader_kwargs['prefetch_factor']

    cfg = 'auto' if cfg is None else cfg
    if cfg not in cfg_specs:
        raise UserError(f'--cfg: unknown configuration {cfg!r} (choose from {", ".join(cfg_specs)})')
    desc += f'-{cfg}' + (f'{gpus:d}' if cfg == 'auto' else '')
    spec = _base_spec(cfg, res, gpus)
    args.G_kwargs, args.D_kwargs, args.G_opt_kwargs, args.D_opt_kwargs, args.loss_kwargs = _network_config(spec, res, gpus)
    args.total_kimg = spec.kimg
    args.batch_size = spec.mb
    args.batch_gpu = spec.mb // spec.ref_gpus
    args.ema_kimg = spec.ema
    args.ema_rampup = spec.ramp
    if cfg == 'cifar':
        args.loss_kwargs.pl_weight = 0
        args.loss_kwargs.style_mixing_prob = 0
        args.D_kwargs.architecture = 'orig'

    if gamma is not None:
        if gamma < 0:
            raise UserError('--gamma must be non-negative')
        desc += f'-gamma{gamma:g}'
        args.loss_kwargs.r1_gamma = gamma
    if kimg is not None:
        if kimg < 1:
            raise UserError('--kimg must be at least 1')
        desc += f'-kimg{kimg:d}'
        args.total_kimg = kimg
    if batch is not None:
        if not (batch >= 1 and batch % gpus == 0):
            raise UserError('--batch must be at least 1 and divisible by --gpus')
        desc += f'-batch{batch}'
        args.batch_size = batch
        args.batch_gpu = batch // gpus
    if batch_gpu is not None:
        if args.batch_size % (batch_gpu * gpus) != 0:
            raise UserError('--batch-gpu times --gpus must divide --batch')
        args.batch_gpu = batch_gpu
    args.batch_gpu = max(min(args.batch_gpu, args.batch_size // gpus), 1)
    mbstd = args.D_kwargs.epilogue_kwargs.mbstd_group_size
    if mbstd is not None and args.batch_gpu % min(mbstd, args.batch_gpu) != 0:
        raise UserError(f'--batch-gpu ({args.batch_gpu}) must be divisible by the minibatch-stddev group size ({mbstd})')

    desc += _augment_config(args, aug, p, target, augpipe)
    desc += _resume_config(args, resume, freezed)
    _performance_config(args, fp32, nhwc, allow_tf32, nobench)
    if device is not None:
        args.device = device
    if grid_max is not None:
        args.image_grid_max = grid_max
    return desc, args

def _augment_config(args, aug, p, target, augpipe):
    desc = ''
    if aug is not None:
        desc += f'-{aug}'
    aug = 'ada' if aug is None else aug
    if aug not in ('ada', 'noaug', 'fixed'):
        raise UserError(f'--aug: unknown mode {aug!r} (ada, noaug or fixed)')
    if aug == 'ada':
        args.ada_target = 0.6
    elif aug == 'fixed':
        if p is None:
            raise UserError('--aug=fixed requires --p')
    if p is not None:
        if aug != 'fixed':
            raise UserError('--p can only be specified with --aug=fixed')
        if not 0 <= p <= 1:
            raise UserError('--p must be between 0 and 1')
        desc += f'-p{p:g}'
        args.augment_p = p
    if target is not None:
        if aug != 'ada':
            raise UserError('--target can only be specified with --aug=ada')
        if not 0 <= target <= 1:
            raise UserError('--target must be between 0 and 1')
        desc += f'-target{target:g}'
        args.ada_target = target
    if augpipe is not None:
        if aug == 'noaug':
            raise UserError('--augpipe cannot be specified with --aug=noaug')
        desc += f'-{augpipe}'
    augpipe = 'bgc' if augpipe is None else augpipe
    if augpipe not in augpipe_specs:
        raise UserError(f'--augpipe: unknown pipeline {augpipe!r} (choose from {", ".join(augpipe_specs)})')
    if aug != 'noaug':
        args.augment_kwargs = dnnlib.EasyDict(class_name='stylegan2_ada_pytorch.training.augment.AugmentPipe', **augpipe_specs[augpipe])
    return desc

def _resume_config(args, resume, freezed):
    desc = ''
    if resume == 'noresume':
        desc += '-noresume'
    resume = 'noresume' if resume is None else resume
    if resume == 'noresume':
        pass
    elif resume in resume_specs:
        desc += f'-resume{resume}'
        args.resume_pkl = resume_specs[resume]
    else:
        desc += '-resumecustom'
        args.resume_pkl = resume
    if resume != 'noresume':
        args.ada_kimg = 100
        args.ema_rampup = None
    if freezed is not None:
        if freezed < 0:
            raise UserError('--freezed must be non-negative')
        desc += f'-freezed{freezed:d}'
        args.D_kwargs.block_kwargs.freeze_layers = freezed
    return desc

def _performance_config(args, fp32, nhwc, allow_tf32, nobench):
    if fp32:
        args.G_kwargs.synthesis_kwargs.num_fp16_res = args.D_kwargs.num_fp16_res = 0
        args.G_kwargs.synthesis_kwargs.conv_clamp = args.D_kwargs.conv_clamp = None
    if nhwc:
        args.G_kwargs.synthesis_kwargs.fp16_channels_last = args.D_kwargs.block_kwargs.fp16_channels_last = True
    if nobench:
        args.cudnn_benchmark = False
    if allow_tf32:
        args.allow_tf32 = True

#----------------------------------------------------------------------------

def launch_training(args, desc, outdir, dry_run):
    """Print the options (rank 0), then create the run dir and train (training.launch)."""
    args.run_dir = launch.next_run_dir(outdir, desc)     # what rank 0 is about to create
    if launch.is_main_process():
        print()
        print('Training options:')
        print(json.dumps(args, indent=2))
        print()
        print(f'Output directory:   {args.run_dir}')
        print(f'Training data:      {args.training_set_kwargs.path}')
        print(f'Training duration:  {args.total_kimg} kimg')
        print(f'Number of processes: {args.num_gpus}')
        print(f'Image resolution:   {args.training_set_kwargs.resolution}')
        print()
    if dry_run:
        if launch.is_main_process():
            print('Dry run; exiting.')
        return
    launch.launch(args, outdir=outdir, desc=desc)

#----------------------------------------------------------------------------

def _comma_list(value):
    if value is None or value.lower() == 'none' or value == '':
        return []
    return value.split(',')

@click.command()
@click.pass_context
# General options.
@click.option('--outdir',     help='Where to save the results', required=True, metavar='DIR')
@click.option('--gpus',       help='Number of processes (GPUs, or CPU processes without CUDA); under torchrun: its WORLD_SIZE', type=click.IntRange(min=1), default=1, show_default=True, metavar='INT')
@click.option('--snap',       help='Snapshot interval in ticks', type=click.IntRange(min=1), default=50, show_default=True, metavar='INT')
@click.option('--metrics',    help='Comma-separated metrics or "none" (fid2k_pix/kid2k_pix need no weights)', type=_comma_list, default='none', show_default=True)
@click.option('--seed',       help='Random seed', type=int, default=0, show_default=True, metavar='INT')
@click.option('-n', '--dry-run', help='Print training options and exit', is_flag=True)
# Dataset.
@click.option('--data',       help='Training data (directory or zip)', metavar='PATH', required=True)
@click.option('--cond',       help='Train conditional model based on dataset labels', type=bool, default=False, show_default=True, metavar='BOOL')
@click.option('--subset',     help='Train with only N images', type=click.IntRange(min=1), metavar='INT')
@click.option('--mirror',     help='Enable dataset x-flips', type=bool, default=False, show_default=True, metavar='BOOL')
# Base config.
@click.option('--cfg',        help='Base config', type=click.Choice(list(cfg_specs)), default='auto', show_default=True)
@click.option('--gamma',      help='Override R1 gamma', type=click.FloatRange(min=0), metavar='FLOAT')
@click.option('--kimg',       help='Override training duration', type=click.IntRange(min=1), metavar='INT')
@click.option('--batch',      help='Override total batch size', type=click.IntRange(min=1), metavar='INT')
@click.option('--batch-gpu',  help='Samples per process at a time (gradient accumulation)', type=click.IntRange(min=1), metavar='INT')
# Discriminator augmentation.
@click.option('--aug',        help='Augmentation mode [default: ada]', type=click.Choice(['noaug', 'ada', 'fixed']))
@click.option('--p',          help='Augmentation probability for --aug=fixed', type=click.FloatRange(min=0, max=1), metavar='FLOAT')
@click.option('--target',     help='ADA target value for --aug=ada', type=click.FloatRange(min=0, max=1), metavar='FLOAT')
@click.option('--augpipe',    help='Augmentation pipeline [default: bgc]', type=click.Choice(list(augpipe_specs)))
# Transfer learning.
@click.option('--resume',     help='Resume from a network pickle (path, URL, or a preset name)', metavar='PKL')
@click.option('--freezed',    help='Freeze the first N layers of D', type=click.IntRange(min=0), metavar='INT')
# Performance options.
@click.option('--fp32',       help='Disable mixed-precision training', type=bool, default=False, show_default=True, metavar='BOOL')
@click.option('--nhwc',       help='Use NHWC memory format with FP16', type=bool, default=False, show_default=True, metavar='BOOL')
@click.option('--nobench',    help='Disable cuDNN benchmarking', type=bool, default=False, show_default=True, metavar='BOOL')
@click.option('--allow-tf32', help='Allow PyTorch to use TF32 internally', type=bool, default=False, show_default=True, metavar='BOOL')
@click.option('--workers',    help='Number of data loader worker processes', type=click.IntRange(min=0), default=3, show_default=True, metavar='INT')
@click.option('--device',     help='Torch device (default: cuda if available, else cpu)', metavar='DEV')
@click.option('--grid-max',   help='Cap on images in the snapshot grids', type=click.IntRange(min=1), metavar='INT')
@click.option('--inception-weights', help='Local torchvision inception_v3 state dict for FID/KID', metavar='PTH')
def main(ctx, outdir, dry_run, **config_kwargs):
    """Train a StyleGAN2 generator with adaptive discriminator augmentation (ADA).

    \b
    Examples:

    \b
    # A tiny generator on CPU, Fashion-MNIST converted with stylegan2-dataset:
    stylegan2-train --outdir=runs --data=fashion32.zip --cfg=tiny --kimg=20 --gpus=1

    \b
    # Fine-tune FFHQ at 1024x1024 from a local pickle, 8 GPUs:
    stylegan2-train --outdir=runs --data=ffhq.zip --gpus=8 --cfg=paper1024 --mirror=1 --resume=ffhq.pkl

    \b
    # 2 machines with 8 GPUs each (run on both, NODE_RANK=0 and 1):
    torchrun --nnodes=2 --node_rank=$NODE_RANK --nproc_per_node=8 --master_addr=host0 --master_port=29500 \\
        -m stylegan2_ada_pytorch.cli.train --outdir=runs --data=ffhq.zip --cfg=paper1024 --mirror=1
    """
    try:
        desc, args = setup_training_loop_kwargs(**config_kwargs)
        launch_training(args=args, desc=desc, outdir=outdir, dry_run=dry_run)
    except UserError as err:
        raise click.ClickException(str(err))

#----------------------------------------------------------------------------

if __name__ == '__main__':
    main()

#----------------------------------------------------------------------------
