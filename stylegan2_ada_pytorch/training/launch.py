"""Starting a training run on one process, on `--gpus N` processes of one machine, or under torchrun.

Every training command (`stylegan2-train`, `gradstyle-train`, and plugin trainers) launches through
`launch()`, so they all support the same three ways of running:

- one process (`--gpus 1`, the default);
- `--gpus N` on one machine: N processes started here (torch.multiprocessing.spawn), meeting
  through a file:// rendezvous in a temporary folder;
- torchrun (or any launcher that sets the env:// variables RANK, WORLD_SIZE, LOCAL_RANK,
  MASTER_ADDR, MASTER_PORT), on one or many machines: each process runs the whole command; the
  process group is set up from the environment, `--gpus` is taken from WORLD_SIZE.

In every case: NCCL on CUDA, gloo on CPU; each process uses its *local* device (`cuda:LOCAL_RANK`,
or the CPU); only rank 0 creates the run directory, writes `training_options.json` and `log.txt`
(and, through the training loop, snapshots, grids and stats), so other machines need no shared
folder for the outputs (they do need the training data at the same path).

    # 2 machines x 4 GPUs; the same command on each machine, NODE_RANK 0 and 1:
    torchrun --nnodes 2 --node_rank $NODE_RANK --nproc_per_node 4 --master_addr host0 --master_port 29500 \\
        -m stylegan2_ada_pytorch.cli.train --outdir runs --data ffhq256.zip --cfg paper256 --batch 64
"""

import json
import os
import re
import tempfile

import torch

from .. import dnnlib
from ..dnnlib import UserError

__all__ = ['torchrun_env', 'is_main_process', 'num_processes', 'next_run_dir', 'launch', 'run_process']

_TORCHRUN_VARS = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK')

#----------------------------------------------------------------------------

def torchrun_env(environ=None):
    """EasyDict(rank, world_size, local_rank, master_addr, master_port) when started by torchrun, else None.

    Raises UserError when the variables are only partly set or not numbers.

    Example:
        >>> env = launch.torchrun_env()        # under torchrun --nproc_per_node 2: EasyDict(rank=1, world_size=2, ...)
    """
    environ = os.environ if environ is None else environ
    if not any(name in environ for name in _TORCHRUN_VARS):
        return None
    missing = [name for name in _TORCHRUN_VARS + ('MASTER_ADDR', 'MASTER_PORT') if name not in environ]
    if missing:
        raise UserError(f'torchrun environment is incomplete: {", ".join(missing)} not set (start the command with torchrun, '
            'or set RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT)')
    try:
        env = dnnlib.EasyDict({name.lower(): int(environ[name]) for name in _TORCHRUN_VARS})
    except ValueError:
        raise UserError(f'torchrun environment: {", ".join(f"{n}={environ[n]!r}" for n in _TORCHRUN_VARS)} must be integers')
    if not 0 <= env.rank < env.world_size or env.local_rank < 0:
        raise UserError(f'torchrun environment: RANK={env.rank} must be in [0, WORLD_SIZE={env.world_size})')
    env.master_addr, env.master_port = environ['MASTER_ADDR'], environ['MASTER_PORT']
    return env

def is_main_process():
    """True unless this is a torchrun process with RANK != 0 (the one that prints and writes)."""
    env = torchrun_env()
    return env is None or env.rank == 0

def num_processes(gpus, flag='--gpus'):
    """How many processes take part: `gpus` here, torchrun's WORLD_SIZE under torchrun.

    Under torchrun, `gpus` must be left at 1 or equal WORLD_SIZE. Raises UserError otherwise, and
    when the count is not a power of two (the toolkit's batch rules need that).
    """
    env = torchrun_env()
    if env is not None:
        if gpus not in (None, 1, env.world_size):
            raise UserError(f'{flag} {gpus} does not match torchrun\'s WORLD_SIZE={env.world_size}; under torchrun the '
                f'number of processes comes from torchrun (leave {flag} out)')
        gpus = env.world_size
    gpus = 1 if gpus is None else int(gpus)
    if not (gpus >= 1 and gpus & (gpus - 1) == 0):
        raise UserError(f'{flag} must be a power of two' + (f' (torchrun WORLD_SIZE={gpus})' if env is not None else ''))
    return gpus

def next_run_dir(outdir, desc):
    """`<outdir>/<id:05d>-<desc>` with id one past the largest numeric prefix already there."""
    prev = [x for x in os.listdir(outdir) if os.path.isdir(os.path.join(outdir, x))] if os.path.isdir(outdir) else []
    ids = [int(m.group()) for m in (re.match(r'^\d+', x) for x in prev) if m is not None]
    run_id = max(ids, default=-1) + 1
    return os.path.join(outdir, f'{run_id:05d}-{desc}')

#----------------------------------------------------------------------------

def _local_device(args, local_rank):
    device = args.get('device')
    if torch.cuda.is_available() and (device is None or str(device) == 'cuda'):
        torch.cuda.set_device(local_rank)
        return torch.device('cuda', local_rank)
    return torch.device(device if device is not None else 'cpu')

def _backend(device):
    return 'nccl' if device.type == 'cuda' and os.name != 'nt' else 'gloo'

def run_process(rank, local_rank, args, loop_fn=None, init_method=None):
    """The body of one process: process group (if needed), statistics, log.txt on rank 0, then the loop.

    `init_method` is the rendezvous for a group this function creates (file:// for --gpus N);
    None means there is one process or the group exists already (torchrun). The loop is called as
    `loop_fn(rank=rank, **args)` with `args.device` set to this process's local device.
    """
    from ..torch_utils import custom_ops, training_stats
    from . import training_loop
    loop_fn = training_loop.training_loop if loop_fn is None else loop_fn
    device = _local_device(args, local_rank)
    if init_method is not None:
        torch.distributed.init_process_group(backend=_backend(device), init_method=init_method, rank=rank, world_size=args.num_gpus)
    try:
        training_stats.init_multiprocessing(rank=rank, sync_device=device if args.num_gpus > 1 else None)
        if rank != 0:
            custom_ops.verbosity = 'none'
        kwargs = dict(args, device=str(device))
        if rank == 0:
            with dnnlib.util.Logger(file_name=os.path.join(args.run_dir, 'log.txt'), file_mode='a', should_flush=True):
                return loop_fn(rank=rank, **kwargs)
        return loop_fn(rank=rank, **kwargs)
    finally:
        if init_method is not None:
            torch.distributed.destroy_process_group()

def _spawned(rank, args, temp_dir, loop_fn):
    init_file = os.path.abspath(os.path.join(temp_dir, '.torch_distributed_init'))
    run_process(rank, rank, args, loop_fn, init_method=f'file://{init_file}')

def _create_run_dir(args, outdir, desc):
    args.run_dir = next_run_dir(outdir, desc)
    os.makedirs(args.run_dir)
    with dnnlib.util.atomic_write(os.path.join(args.run_dir, 'training_options.json'), 'w') as f:
        json.dump(args, f, indent=2)
    print(f'Output directory: {args.run_dir}')

def launch(args, outdir, desc, prepare_fn=None, loop_fn=None):
    """Run `loop_fn(rank=..., **args)` on `args.num_gpus` processes; return the run directory.

    Args:
        args:       the loop's kwargs (an EasyDict from a `setup_*_config()` builder) with
                    `num_gpus` = `num_processes(--gpus)`; `run_dir` is set here.
        outdir:     where rank 0 creates `<outdir>/<id:05d>-<desc>`.
        desc:       the run directory's description.
        prepare_fn: optional `prepare_fn(args, temp_dir)`, called once on rank 0 after the run dir
                    and training_options.json exist and before any process trains; it may add to
                    `args` (e.g. save initial networks in `temp_dir`, a folder that lives until
                    training ends, and set `args.resume_pkl`). Under torchrun every rank then
                    receives rank 0's `args`.
        loop_fn:    the training function (default `training_loop.training_loop`); for --gpus N it
                    must be importable by name (a module-level function).

    The process group, devices and log are handled as described in the module docstring. Rank 0
    prints `Output directory: <run_dir>`.

    Example (a plugin trainer's click command):
        >>> desc, args = setup_my_config(gpus=launch.num_processes(gpus), **opts)   # raises UserError
        >>> run_dir = launch.launch(args, outdir, desc, prepare_fn=lambda a, tmp: save_init(a, tmp, init))
    """
    env = torchrun_env()
    if env is None:
        _create_run_dir(args, outdir, desc)
        with tempfile.TemporaryDirectory() as temp_dir:
            if prepare_fn is not None:
                prepare_fn(args, temp_dir)
            if args.num_gpus == 1:
                run_process(0, 0, args, loop_fn)
            else:
                torch.multiprocessing.spawn(fn=_spawned, args=(args, temp_dir, loop_fn), nprocs=args.num_gpus)
        return args.run_dir
    if args.num_gpus != env.world_size:
        raise UserError(f'num_gpus={args.num_gpus} but torchrun started WORLD_SIZE={env.world_size} processes')
    device = _local_device(args, env.local_rank)
    torch.distributed.init_process_group(backend=_backend(device), init_method='env://', rank=env.rank, world_size=env.world_size)
    try:
        with tempfile.TemporaryDirectory() as temp_dir:
            if env.rank == 0:
                _create_run_dir(args, outdir, desc)
                if prepare_fn is not None:
                    prepare_fn(args, temp_dir)
            shared = [args]
            torch.distributed.broadcast_object_list(shared, src=0)
            args = dnnlib.EasyDict(shared[0])
            run_process(env.rank, env.local_rank, args, loop_fn)
    finally:
        torch.distributed.destroy_process_group()
    return args.run_dir

#----------------------------------------------------------------------------
