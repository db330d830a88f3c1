"""The training loop of "Training Generative Adversarial Networks with Limited Data" (Karras et al.,
NeurIPS 2020), reusable by plugins.

Shaped like the toolkit's: every component comes from a `*_kwargs` dict with a `class_name`, the
run dir holds training_options.json, log.txt, stats.jsonl, image grids and
network-snapshot-<kimg>.pkl files, and `training_loop(**kwargs)` accepts the toolkit's arguments.

What differs, on purpose:
- It runs on CPU as well as CUDA (`device`), with several processes through torch.distributed
  (gloo on CPU, nccl on GPU); gradients are averaged with one all-reduce per phase, so a phase may
  train any subset of parameters.
- Which parameters a network's phases train is configuration: `G_trainable` / `D_trainable` are
  regular expressions over parameter names (GradStyle trains `synthesis.injectors.*` only).
- Extra persistent modules (`extra_kwargs`, e.g. an encoder) are built or resumed like G and D,
  handed to the loss by name, and travel in every snapshot; `extra_phases` trains them in phases
  of their own ('<name>main' / '<name>reg', or '<name>both'), after G's and D's.
- Snapshots also carry `training_state` (kimg, tick, optimiser and loss state, augment p, RNG and
  data-order state), so `resume_pkl` continues a run where it stopped; resuming from a pickle
  without it (NVIDIA's) copies the weights only, as the toolkit does.
- Snapshots are written to a temporary name and renamed; a NaN/inf gradient stops the run with a
  message and leaves the last snapshot untouched.
- With several processes, every snapshot first checks that all processes hold bit-identical
  weights (sha256 digests gathered from every rank, kept in training_state.param_digests).
"""

import copy
import json
import os
import re
import time

import numpy as np
import torch

from .. import dnnlib
from .. import legacy
from ..torch_utils import misc
from ..torch_utils import training_stats
from ..torch_utils.ops import conv2d_gradfix
from ..torch_utils.ops import grid_sample_gradfix
from . import training_state
from . import snapshot_images

#----------------------------------------------------------------------------

class TrainingError(RuntimeError):
    """Training cannot continue (e.g. a non-finite loss); the message says why and where."""

#----------------------------------------------------------------------------

def training_loop(
    run_dir                 = '.',      # Output directory.
    training_set_kwargs     = {},       # Options for the training set.
    data_loader_kwargs      = {},       # Options for torch.utils.data.DataLoader.
    G_kwargs                = {},       # Options for the generator network.
    D_kwargs                = {},       # Options for the discriminator network.
    G_opt_kwargs            = {},       # Options for the generator optimiser.
    D_opt_kwargs            = {},       # Options for the discriminator optimiser.
    augment_kwargs          = None,     # Options for the augmentation pipeline; None = disable.
    loss_kwargs             = {},       # Options for the loss function.
    metrics                 = [],       # Metrics to evaluate during training.
    metric_kwargs           = {},       # Options for the metrics (e.g. inception_weights=PATH).
    random_seed             = 0,        # Global random seed.
    num_gpus                = 1,        # Number of processes taking part (GPUs, or CPU processes).
    rank                    = 0,        # Rank of the current process in [0, num_gpus).
    batch_size              = 4,        # Total batch size for one training iteration.
    batch_gpu               = 4,        # Number of samples processed at a time by one process.
    ema_kimg                = 10,       # Half-life of the exponential moving average (EMA) of G weights.
    ema_rampup              = None,     # EMA ramp-up coefficient, None = no ramp-up.
    G_reg_interval          = 4,        # How often to perform regularisation for G; None = disable lazy regularisation.
    D_reg_interval          = 16,       # How often to perform regularisation for D; None = disable lazy regularisation.
    augment_p               = 0,        # Initial value of augmentation probability.
    ada_target              = None,     # ADA target value; None = fixed p.
    ada_interval            = 4,        # How often to perform ADA adjustment?
    ada_kimg                = 500,      # ADA adjustment speed, in kimg for p to go from 0 to 1.
    total_kimg              = 25000,    # Total length of the training, measured in thousands of real images.
    kimg_per_tick           = 4,        # Progress snapshot interval.
    image_snapshot_ticks    = 50,       # How often to save image snapshots; None = disable.
    network_snapshot_ticks  = 50,       # How often to save network snapshots; None = disable.
    resume_pkl              = None,     # Network pickle to resume training from (any format legacy reads).
    cudnn_benchmark         = True,     # Enable torch.backends.cudnn.benchmark?
    allow_tf32              = False,    # Enable torch.backends.cuda.matmul.allow_tf32 and cudnn.allow_tf32?
    abort_fn                = None,     # Callback that determines whether to abort training.
    progress_fn             = None,     # Callback function for updating training progress.
    device                  = None,     # Torch device; None = cuda:<rank> if CUDA is available, else cpu.
    G_trainable             = '.*',     # Regex: names of G parameters its phases train.
    D_trainable             = '.*',     # Regex: names of D parameters its phases train.
    extra_kwargs            = {},       # {name: kwargs} of extra persistent modules (snapshotted, given to the loss).
    extra_phases            = {},       # {name of an extra module: dict(opt_kwargs=, reg_interval=None, trainable='.*')}, in phase order.
    image_grid_max          = None,     # Cap on the number of images in the snapshot grids; None = the toolkit's size.
    snapshot_extra_data     = {},       # Plain data added to every network snapshot (e.g. a plugin's config).
    image_grid_kwargs       = None,     # Replace the fakes grids: kwargs (class_name = a function) called as fn(run_dir=, nets=, training_set=, cur_nimg=, device=, rank=, **kwargs).
    **unknown,
):
    if unknown:
        raise TypeError(f'training_loop: unknown arguments {sorted(unknown)}')
    start_time = time.time()
    device = _setup_process(device, rank, num_gpus, random_seed, cudnn_benchmark, allow_tf32)

    # Data.
    training_set = dnnlib.util.construct_class_by_name(**training_set_kwargs)
    if rank == 0:
        print(f'Num images: {len(training_set)}, image shape: {training_set.image_shape}, label shape: {training_set.label_shape}')

    # Networks, augmentation, extra modules.
    common_kwargs = dict(c_dim=training_set.label_dim, img_resolution=training_set.resolution, img_channels=training_set.num_channels)
    nets = dnnlib.EasyDict()
    nets.G = dnnlib.util.construct_class_by_name(**G_kwargs, **common_kwargs).train().requires_grad_(False).to(device)
    nets.D = dnnlib.util.construct_class_by_name(**D_kwargs, **common_kwargs).train().requires_grad_(False).to(device)
    nets.G_ema = copy.deepcopy(nets.G).eval()
    for name, kwargs in extra_kwargs.items():
        nets[name] = dnnlib.util.construct_class_by_name(**kwargs).eval().requires_grad_(False).to(device)
    nets.augment_pipe = None
    if augment_kwargs is not None and (augment_p > 0 or ada_target is not None):
        nets.augment_pipe = dnnlib.util.construct_class_by_name(**augment_kwargs).train().requires_grad_(False).to(device)
        nets.augment_pipe.p.copy_(torch.as_tensor(augment_p))

    resume_state = None
    if resume_pkl is not None and rank == 0:
        resume_state = _resume_networks(resume_pkl, nets)
    if num_gpus > 1:
        _broadcast_modules(nets)

    # Loss and phases.
    loss = dnnlib.util.construct_class_by_name(device=device, G_mapping=nets.G.mapping, G_synthesis=nets.G.synthesis,
        D=nets.D, augment_pipe=nets.augment_pipe, **{name: nets[name] for name in extra_kwargs}, **loss_kwargs)
    phases = _build_phases(nets, G_opt_kwargs, D_opt_kwargs, G_reg_interval, D_reg_interval, G_trainable, D_trainable, rank,
        extra_phases)

    # Progress counters, possibly resumed.
    progress = dnnlib.EasyDict(cur_nimg=0, cur_tick=0, batch_idx=0, tick_start_nimg=0)
    if num_gpus > 1:
        resume_state = _broadcast_object(resume_state)
    if resume_state is not None:
        training_state.restore(resume_state, progress=progress, phases=phases, loss=loss, augment_pipe=nets.augment_pipe, rank=rank)
        if rank == 0:
            print(f'Resuming at kimg {progress.cur_nimg / 1000:.1f}, tick {progress.cur_tick}.')

    # Data loader positioned after what earlier sessions consumed, image grids, statistics. None
    # of this may draw from the training RNGs, or a resumed run would diverge from an unbroken one.
    with training_state.preserved_rng(device):
        sampler = misc.InfiniteSampler(dataset=training_set, rank=rank, num_replicas=num_gpus, seed=random_seed,
            start_idx=progress.batch_idx * batch_size)
        data_iter = iter(torch.utils.data.DataLoader(dataset=training_set, sampler=sampler, batch_size=batch_size // num_gpus, **data_loader_kwargs))
        grid = None
        if image_grid_kwargs is None:
            grid = snapshot_images.setup(run_dir, training_set, nets.G_ema, device, rank, random_seed, batch=batch_gpu,
                max_images=image_grid_max, write=(resume_state is None))
        elif resume_state is None:
            dnnlib.util.call_func_by_name(func_name=image_grid_kwargs['class_name'], run_dir=run_dir, nets=nets,
                training_set=training_set, cur_nimg=None, device=device, rank=rank, **_without_class(image_grid_kwargs))
    stats = _Stats(run_dir, rank)
    ada_stats = None
    if nets.augment_pipe is not None and ada_target is not None:
        ada_stats = training_stats.Collector(regex='Loss/signs/real')
        if resume_state is not None:
            training_state.restore_ada_pending(resume_state, ada_stats)

    if rank == 0:
        print(f'Training for {total_kimg} kimg...\n')
    if progress_fn is not None:
        progress_fn(progress.cur_nimg // 1000, total_kimg)
    tick_start_time = time.time()
    maintenance_time = tick_start_time - start_time
    done = False
    while not done:
        _training_step(data_iter, training_set, phases, loss, nets, device, batch_size, batch_gpu, num_gpus, progress)
        _update_ema(nets, batch_size, ema_kimg, ema_rampup, progress.cur_nimg)
        progress.cur_nimg += batch_size
        progress.batch_idx += 1
        if ada_stats is not None and (progress.batch_idx % ada_interval == 0):
            _update_ada(ada_stats, nets.augment_pipe, ada_target, batch_size, ada_interval, ada_kimg)

        done = progress.cur_nimg >= total_kimg * 1000
        if (not done) and (progress.cur_tick != 0) and (progress.cur_nimg < progress.tick_start_nimg + kimg_per_tick * 1000):
            continue

        # Tick: report, snapshots, metrics, abort check. Nothing here draws from the training RNGs.
        tick_end_time = time.time()
        with training_state.preserved_rng(device):
            abort = _report_tick(progress, nets, phases, start_time, tick_start_time, tick_end_time, maintenance_time, rank, abort_fn)
            done = done or abort
            if image_snapshot_ticks is not None and (done or progress.cur_tick % image_snapshot_ticks == 0):
                if grid is not None:
                    snapshot_images.save(run_dir, grid, nets.G_ema, progress.cur_nimg, rank)
                else:
                    dnnlib.util.call_func_by_name(func_name=image_grid_kwargs['class_name'], run_dir=run_dir, nets=nets,
                        training_set=training_set, cur_nimg=progress.cur_nimg, device=device, rank=rank, **_without_class(image_grid_kwargs))
            snapshot_pkl = None
            if network_snapshot_ticks is not None and (done or progress.cur_tick % network_snapshot_ticks == 0):
                snapshot_pkl = _save_snapshot(run_dir, training_set_kwargs, nets, extra_kwargs, progress, phases, loss, ada_stats,
                    device, num_gpus, rank, snapshot_extra_data)
            _evaluate_metrics(metrics, metric_kwargs, snapshot_pkl, nets, training_set_kwargs, rank, device, run_dir, stats)
            stats.write_tick(progress.cur_nimg)
            if progress_fn is not None:
                progress_fn(progress.cur_nimg // 1000, total_kimg)

        progress.cur_tick += 1
        progress.tick_start_nimg = progress.cur_nimg
        tick_start_time = time.time()
        maintenance_time = tick_start_time - tick_end_time

    if rank == 0:
        print('\nExiting...')
    return nets

#----------------------------------------------------------------------------

def _without_class(kwargs):
    return {key: value for key, value in kwargs.items() if key != 'class_name'}

def _setup_process(device, rank, num_gpus, random_seed, cudnn_benchmark, allow_tf32):
    if device is None:
        device = torch.device('cuda', rank) if torch.cuda.is_available() else torch.device('cpu')
    device = torch.device(device)
    np.random.seed(random_seed * num_gpus + rank)
    torch.manual_seed(random_seed * num_gpus + rank)
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32
    conv2d_gradfix.enabled = True
    grid_sample_gradfix.enabled = True
    return device

def _resume_networks(resume_pkl, nets):
    """Copy weights (by name) from any pickle legacy reads; return its training_state, if any."""
    print(f'Resuming from "{resume_pkl}"')
    with dnnlib.util.open_url(resume_pkl, flag='--resume') as f:
        resume_data = legacy.load_network_pkl(f)
    for name, module in nets.items():
        if module is not None and isinstance(resume_data.get(name), torch.nn.Module):
            misc.copy_params_and_buffers(resume_data[name], module, require_all=False)
    state = resume_data.get('training_state', None)
    return state if isinstance(state, dict) else None

def _broadcast_modules(nets):
    for module in nets.values():
        if module is not None:
            for tensor in misc.params_and_buffers(module):
                torch.distributed.broadcast(tensor.data, src=0)

def _broadcast_object(obj):
    objects = [obj]
    torch.distributed.broadcast_object_list(objects, src=0)
    return objects[0]

#----------------------------------------------------------------------------

def _build_phases(nets, G_opt_kwargs, D_opt_kwargs, G_reg_interval, D_reg_interval, G_trainable, D_trainable, rank, extra_phases={}):
    """One optimiser per network over the parameters it trains; lazy regularisation as the toolkit does it."""
    phases = []
    specs = [('G', G_opt_kwargs, G_reg_interval, G_trainable), ('D', D_opt_kwargs, D_reg_interval, D_trainable)]
    specs += [(name, spec['opt_kwargs'], spec.get('reg_interval'), spec.get('trainable', '.*')) for name, spec in extra_phases.items()]
    for name, opt_kwargs, reg_interval, pattern in specs:
        module = nets[name]
        params = [p for pname, p in module.named_parameters() if re.fullmatch(pattern, pname)]
        if len(params) == 0:
            if rank == 0:
                print(f'{name}: no parameters match {pattern!r}; its phases are skipped.')
            continue
        if reg_interval is None:
            opt = dnnlib.util.construct_class_by_name(params=params, **opt_kwargs)
            phases += [dnnlib.EasyDict(name=name + 'both', net=name, module=module, params=params, opt=opt, interval=1)]
        else:
            ratio = reg_interval / (reg_interval + 1)
            opt_kwargs = dnnlib.EasyDict(opt_kwargs)
            opt_kwargs.lr = opt_kwargs.lr * ratio
            opt_kwargs.betas = [beta ** ratio for beta in opt_kwargs.betas]
            opt = dnnlib.util.construct_class_by_name(params=params, **opt_kwargs)
            phases += [dnnlib.EasyDict(name=name + 'main', net=name, module=module, params=params, opt=opt, interval=1)]
            phases += [dnnlib.EasyDict(name=name + 'reg', net=name, module=module, params=params, opt=opt, interval=reg_interval)]
    for phase in phases:
        phase.timer = _PhaseTimer(phase.params[0].device)
    return phases

class _PhaseTimer:
    """Milliseconds spent in a phase since the last tick (CUDA events on GPU, wall clock on CPU)."""

    def __init__(self, device):
        self.cuda = device.type == 'cuda'
        self.total_ms = 0.0
        self.pending = []
        self.t0 = None

    def start(self):
        if self.cuda:
            self.pending.append([torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)])
            self.pending[-1][0].record()
        else:
            self.t0 = time.perf_counter()

    def stop(self):
        if self.cuda:
            self.pending[-1][1].record()
        else:
            self.total_ms += (time.perf_counter() - self.t0) * 1000

    def pop_ms(self):
        if self.cuda:
            torch.cuda.synchronize()
            self.total_ms += sum(a.elapsed_time(b) for a, b in self.pending)
            self.pending = []
        value, self.total_ms = self.total_ms, 0.0
        return value

#----------------------------------------------------------------------------

def _training_step(data_iter, training_set, phases, loss, nets, device, batch_size, batch_gpu, num_gpus, progress):
    """One iteration: fetch reals, draw latents, run each phase that is due."""
    with torch.autograd.profiler.record_function('data_fetch'):
        phase_real_img, phase_real_c = next(data_iter)
        phase_real_img = (phase_real_img.to(device).to(torch.float32) / 127.5 - 1).split(batch_gpu)
        phase_real_c = phase_real_c.to(device).split(batch_gpu)
        all_gen_z = torch.randn([len(phases) * batch_size, nets.G.z_dim], device=device)
        all_gen_z = [phase_gen_z.split(batch_gpu) for phase_gen_z in all_gen_z.split(batch_size)]
        all_gen_c = [training_set.get_label(np.random.randint(len(training_set))) for _ in range(len(phases) * batch_size)]
        all_gen_c = torch.from_numpy(np.stack(all_gen_c)).to(device)
        all_gen_c = [phase_gen_c.split(batch_gpu) for phase_gen_c in all_gen_c.split(batch_size)]

    for phase, phase_gen_z, phase_gen_c in zip(phases, all_gen_z, all_gen_c):
        if progress.batch_idx % phase.interval != 0:
            continue
        phase.timer.start()
        phase.opt.zero_grad(set_to_none=True)
        for p in phase.params:
            p.requires_grad_(True)
        # Each process holds batch_size // num_gpus reals, in batch_gpu chunks (zip stops there).
        num_rounds = len(phase_real_img)
        for round_idx, (real_img, real_c, gen_z, gen_c) in enumerate(zip(phase_real_img, phase_real_c, phase_gen_z, phase_gen_c)):
            loss.accumulate_gradients(phase=phase.name, real_img=real_img, real_c=real_c, gen_z=gen_z, gen_c=gen_c,
                sync=(round_idx == num_rounds - 1), gain=phase.interval)
        for p in phase.params:
            p.requires_grad_(False)
        with torch.autograd.profiler.record_function(phase.name + '_opt'):
            _reduce_and_check_grads(phase, num_gpus, progress)
            phase.opt.step()
        phase.timer.stop()

def _reduce_and_check_grads(phase, num_gpus, progress):
    """Average gradients over processes (one all-reduce) and stop on a non-finite value."""
    params = [p for p in phase.params if p.grad is not None]
    if len(params) == 0:
        return
    flat = torch.cat([p.grad.flatten() for p in params])
    if num_gpus > 1:
        torch.distributed.all_reduce(flat)
        flat /= num_gpus
    if not torch.isfinite(flat).all():
        raise TrainingError(f'non-finite loss or gradient in phase {phase.name} at kimg {progress.cur_nimg / 1000:.3f} '
            '(the last snapshot in the run dir is intact; lower the learning rate or gamma, or resume from it)')
    grads = flat.split([p.numel() for p in params])
    for p, grad in zip(params, grads):
        p.grad.copy_(grad.reshape(p.shape))

def _update_ema(nets, batch_size, ema_kimg, ema_rampup, cur_nimg):
    with torch.autograd.profiler.record_function('Gema'):
        ema_nimg = ema_kimg * 1000
        if ema_rampup is not None:
            ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
        ema_beta = 0.5 ** (batch_size / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(nets.G_ema.parameters(), nets.G.parameters()):
                p_ema.copy_(p.lerp(p_ema, ema_beta))
            for b_ema, b in zip(nets.G_ema.buffers(), nets.G.buffers()):
                b_ema.copy_(b)

def _update_ada(ada_stats, augment_pipe, ada_target, batch_size, ada_interval, ada_kimg):
    ada_stats.update()
    adjust = np.sign(ada_stats['Loss/signs/real'] - ada_target) * (batch_size * ada_interval) / (ada_kimg * 1000)
    augment_pipe.p.copy_((augment_pipe.p + adjust).max(misc.constant(0, device=augment_pipe.p.device)))

#----------------------------------------------------------------------------

def _save_snapshot(run_dir, training_set_kwargs, nets, extra_kwargs, progress, phases, loss, ada_stats, device, num_gpus, rank, extra_data):
    """network-snapshot-<kimg>.pkl: the toolkit's dict plus extra modules and training_state."""
    state = training_state.capture(progress=progress, phases=phases, loss=loss, augment_pipe=nets.augment_pipe,
        ada_stats=ada_stats, device=device, num_gpus=num_gpus, nets=nets)
    diverged = training_state.inconsistent_networks(state)
    if diverged:    # every process sees the gathered digests, so all of them stop here
        raise TrainingError(f'the processes disagree on the weights of {", ".join(f"{n} (rank {r} vs rank 0)" for n, r in diverged)} '
            f'at kimg {progress.cur_nimg / 1000:.3f}; no snapshot was written')
    snapshot_pkl = os.path.join(run_dir, f'network-snapshot-{progress.cur_nimg // 1000:06d}.pkl')
    if rank == 0:
        data = dict(training_set_kwargs=dict(training_set_kwargs))
        for name in ['G', 'D', 'G_ema', 'augment_pipe', *extra_kwargs]:
            module = nets[name]
            data[name] = None if module is None else copy.deepcopy(module).eval().requires_grad_(False).cpu()
        data.update(copy.deepcopy(dict(extra_data)))
        data['training_state'] = state
        legacy.save_network_pkl(data, snapshot_pkl)
    return snapshot_pkl

def _evaluate_metrics(metrics, metric_kwargs, snapshot_pkl, nets, training_set_kwargs, rank, device, run_dir, stats):
    """Metrics of G_ema after each network snapshot, on rank 0 (the others go on training)."""
    if len(metrics) == 0 or snapshot_pkl is None or rank != 0:
        return
    from ..metrics import metric_main  # imported lazily: metrics are optional
    print('Evaluating metrics...')
    for metric in metrics:
        result_dict = metric_main.calc_metric(metric=metric, G=nets.G_ema, dataset_kwargs=training_set_kwargs,
            device=device, **metric_kwargs)
        metric_main.report_metric(result_dict, run_dir=run_dir, snapshot_pkl=snapshot_pkl)
        stats.metrics.update(result_dict.results)

#----------------------------------------------------------------------------

def _report_tick(progress, nets, phases, start_time, tick_start_time, tick_end_time, maintenance_time, rank, abort_fn):
    """Print the status line, report Progress/Timing/Resources statistics; return the abort flag."""
    tick_kimg = (progress.cur_nimg - progress.tick_start_nimg) / 1000
    total_sec = tick_end_time - start_time
    sec_per_tick = tick_end_time - tick_start_time
    fields = []
    fields += [f"tick {training_stats.report0('Progress/tick', progress.cur_tick):<5d}"]
    fields += [f"kimg {training_stats.report0('Progress/kimg', progress.cur_nimg / 1e3):<8.1f}"]
    fields += [f"time {dnnlib.util.format_time(training_stats.report0('Timing/total_sec', total_sec)):<12s}"]
    fields += [f"sec/tick {training_stats.report0('Timing/sec_per_tick', sec_per_tick):<7.1f}"]
    fields += [f"sec/kimg {training_stats.report0('Timing/sec_per_kimg', sec_per_tick / max(tick_kimg, 1e-8)):<7.2f}"]
    fields += [f"maintenance {training_stats.report0('Timing/maintenance_sec', maintenance_time):<6.1f}"]
    fields += [f"cpumem {training_stats.report0('Resources/cpu_mem_gb', _cpu_mem_gb()):<6.2f}"]
    gpu_mem = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0
    fields += [f"gpumem {training_stats.report0('Resources/peak_gpu_mem_gb', gpu_mem):<6.2f}"]
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    p = float(nets.augment_pipe.p.cpu()) if nets.augment_pipe is not None else 0
    fields += [f"augment {training_stats.report0('Progress/augment', p):.3f}"]
    for phase in phases:
        training_stats.report0('Timing/' + phase.name, phase.timer.pop_ms())
    training_stats.report0('Timing/total_hours', total_sec / (60 * 60))
    training_stats.report0('Timing/total_days', total_sec / (24 * 60 * 60))
    if rank == 0:
        print(' '.join(fields))
    if abort_fn is not None and abort_fn():
        if rank == 0:
            print('\nAborting...')
        return True
    return False

def _cpu_mem_gb():
    try:
        import psutil
        return psutil.Process(os.getpid()).memory_info().rss / 2**30
    except ImportError:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB

class _Stats:
    """Collects every reported statistic each tick and appends it to stats.jsonl (rank 0)."""

    def __init__(self, run_dir, rank):
        self.collector = training_stats.Collector(regex='.*')
        self.metrics = dict()
        self.jsonl = open(os.path.join(run_dir, 'stats.jsonl'), 'at') if rank == 0 else None
        self.tfevents = None
        if rank == 0:
            try:
                import torch.utils.tensorboard as tensorboard
                self.tfevents = tensorboard.SummaryWriter(run_dir)
            except ImportError:
                pass

    def write_tick(self, cur_nimg):
        self.collector.update()
        stats_dict = self.collector.as_dict()
        timestamp = time.time()
        if self.jsonl is not None:
            self.jsonl.write(json.dumps(dict(stats_dict, timestamp=timestamp)) + '\n')
            self.jsonl.flush()
        if self.tfevents is not None:
            global_step = int(cur_nimg / 1e3)
            for name, value in stats_dict.items():
                self.tfevents.add_scalar(name, value.mean, global_step=global_step, walltime=timestamp)
            for name, value in self.metrics.items():
                self.tfevents.add_scalar(f'Metrics/{name}', value, global_step=global_step, walltime=timestamp)
            self.tfevents.flush()

#----------------------------------------------------------------------------
