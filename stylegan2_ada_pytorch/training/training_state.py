"""The `training_state` entry of our snapshots: what a resumed run needs to continue exactly.

The toolkit's snapshots hold networks only, so its `--resume` restarts kimg, augment p and the
optimisers at zero. Ours also hold, as plain data (ints, floats, lists, dicts, CPU tensors — all
readable by the safe loader):

    version          1
    cur_nimg         images shown so far
    cur_tick         index of the next tick
    batch_idx        iterations done (positions the data sampler)
    augment_p        augmentation probability (None without an augment pipe)
    ada_pending      ADA sign moments reported since the last adjustment ([count, sum, sum sq])
    optimizers       {network name ('G', 'D', an extra module's name): optimizer.state_dict()}
    loss             [per process: loss.state_dict()]
    rng              [per process: {'torch': ByteTensor, 'cuda': ByteTensor or None, 'numpy': {...}}]
    param_digests    with several processes: [per process: {network name: misc.params_digest}] of the
                     networks at this snapshot (running averages such as w_avg left out), which the
                     loop checks are equal on every process; None for one process
"""

import contextlib

import numpy as np
import torch

from ..torch_utils import misc

#----------------------------------------------------------------------------

_VERSION = 1
RUNNING_AVERAGES = r'(.*\.)?[^.]+_(avg|ema)'   # tracked by each process from its own batches (mapping.w_avg)

def capture(progress, phases, loss, augment_pipe, ada_stats, device, num_gpus, nets=None):
    """Gather the state on every process (collective when num_gpus > 1); rank 0 stores it.

    `nets` ({name: module or None}) are digested per process when num_gpus > 1 (param_digests).
    """
    optimizers = {}
    for phase in phases:
        optimizers.setdefault(phase.net, phase.opt)  # 'Gmain'/'Greg' share the G optimizer.
    local = dict(loss=_to_cpu(loss.state_dict()), rng=get_rng_state(device))
    if num_gpus > 1 and nets is not None:
        local['digests'] = {name: misc.params_digest(module, RUNNING_AVERAGES) for name, module in nets.items() if module is not None}
    per_process = [local]
    if num_gpus > 1:
        per_process = [None] * num_gpus
        torch.distributed.all_gather_object(per_process, local)
    ada_pending = None
    if ada_stats is not None:
        ada_pending = [float(v) for v in ada_stats.pending('Loss/signs/real')]
    return dict(
        version     = _VERSION,
        cur_nimg    = int(progress.cur_nimg),
        cur_tick    = int(progress.cur_tick) + 1,
        batch_idx   = int(progress.batch_idx),
        augment_p   = None if augment_pipe is None else float(augment_pipe.p.cpu()),
        ada_pending = ada_pending,
        optimizers  = {name: _to_cpu(opt.state_dict()) for name, opt in optimizers.items()},
        loss        = [item['loss'] for item in per_process],
        rng         = [item['rng'] for item in per_process],
        param_digests = [item['digests'] for item in per_process] if 'digests' in local else None,
    )

def inconsistent_networks(state):
    """[(network name, rank)] for each network whose weights on some process differ from rank 0's."""
    digests = state.get('param_digests') or []
    found = []
    for name in sorted(digests[0] if digests else []):
        ranks = [rank for rank in range(1, len(digests)) if digests[rank].get(name) != digests[0][name]]
        if ranks:
            found.append((name, ranks[0]))
    return found

def restore(state, progress, phases, loss, augment_pipe, rank):
    """Put a captured state back (every process); networks were restored from the snapshot already."""
    if state.get('version') != _VERSION:
        raise ValueError(f'--resume: unsupported training_state version {state.get("version")!r}')
    progress.cur_nimg = state['cur_nimg']
    progress.cur_tick = state['cur_tick']
    progress.batch_idx = state['batch_idx']
    progress.tick_start_nimg = state['cur_nimg']
    if augment_pipe is not None and state['augment_p'] is not None:
        augment_pipe.p.copy_(torch.as_tensor(state['augment_p']))
    for phase in phases:
        opt_state = state['optimizers'].get(phase.net)
        if opt_state is not None:
            phase.opt.load_state_dict(opt_state)
    per_process = min(rank, len(state['loss']) - 1)
    loss.load_state_dict(state['loss'][per_process])
    if rank < len(state['rng']):
        set_rng_state(state['rng'][rank])

def restore_ada_pending(state, ada_stats):
    if state.get('ada_pending') is not None:
        ada_stats.add_pending('Loss/signs/real', state['ada_pending'])

#----------------------------------------------------------------------------

def get_rng_state(device):
    np_state = np.random.get_state()
    return dict(
        torch = torch.get_rng_state(),
        cuda  = torch.cuda.get_rng_state(device) if device.type == 'cuda' else None,
        numpy = dict(key=torch.from_numpy(np_state[1].astype(np.int64)), pos=int(np_state[2]),
                     has_gauss=int(np_state[3]), cached_gaussian=float(np_state[4])),
    )

def set_rng_state(state, device=None):
    torch.set_rng_state(state['torch'])
    if state.get('cuda') is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state['cuda'], device if device is not None else 'cuda')
    n = state['numpy']
    np.random.set_state(('MT19937', n['key'].numpy().astype(np.uint32), n['pos'], n['has_gauss'], n['cached_gaussian']))

@contextlib.contextmanager
def preserved_rng(device):
    """Run the block without changing the torch (CPU/CUDA) and NumPy global RNG states."""
    state = get_rng_state(device)
    try:
        yield
    finally:
        set_rng_state(state, device)

def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {key: _to_cpu(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(value) for value in obj)
    return obj

#----------------------------------------------------------------------------
