"""Miscellaneous helpers shared by the networks, the loss and the training loop (toolkit names)."""

import contextlib
import hashlib
import re
import warnings

import numpy as np
import torch

from .. import dnnlib

#----------------------------------------------------------------------------
# Cached constant tensors: one allocation per (value, shape, dtype, device, memory format).

_constant_cache = dict()

def constant(value, shape=None, dtype=None, device=None, memory_format=None):
    value = np.asarray(value)
    if shape is not None:
        shape = tuple(shape)
    if dtype is None:
        dtype = torch.get_default_dtype()
    if device is None:
        device = torch.device('cpu')
    if memory_format is None:
        memory_format = torch.contiguous_format
    key = (value.shape, value.dtype, value.tobytes(), shape, dtype, device, memory_format)
    tensor = _constant_cache.get(key, None)
    if tensor is None:
        tensor = torch.as_tensor(value.copy(), dtype=dtype, device=device)
        if shape is not None:
            tensor, _ = torch.broadcast_tensors(tensor, torch.empty(shape))
        tensor = tensor.contiguous(memory_format=memory_format)
        _constant_cache[key] = tensor
    return tensor

def nan_to_num(input, nan=0.0, posinf=None, neginf=None, *, out=None):
    return torch.nan_to_num(input, nan=nan, posinf=posinf, neginf=neginf, out=out)

#----------------------------------------------------------------------------
# Shape checks that also work while tracing.

symbolic_assert = torch._assert

@contextlib.contextmanager
def suppress_tracer_warnings():
    """Silence torch.jit.TracerWarning inside the block (shape checks compare Python numbers)."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', category=torch.jit.TracerWarning)
        yield

def assert_shape(tensor, ref_shape):
    """Check `tensor.shape` against `ref_shape`; None in `ref_shape` matches any size.

    Example:
        >>> misc.assert_shape(x, [None, 512, 16, 16])   # any batch, 512 channels, 16x16
    """
    if tensor.ndim != len(ref_shape):
        raise AssertionError(f'Wrong number of dimensions: got {tensor.ndim}, expected {len(ref_shape)}')
    for idx, (size, ref_size) in enumerate(zip(tensor.shape, ref_shape)):
        if ref_size is None:
            continue
        if isinstance(ref_size, torch.Tensor):
            with suppress_tracer_warnings():
                symbolic_assert(torch.equal(torch.as_tensor(size), ref_size), f'Wrong size for dimension {idx}')
        elif isinstance(size, torch.Tensor):
            with suppress_tracer_warnings():
                symbolic_assert(torch.equal(size, torch.as_tensor(ref_size)), f'Wrong size for dimension {idx}: expected {ref_size}')
        elif size != ref_size:
            raise AssertionError(f'Wrong size for dimension {idx}: got {size}, expected {ref_size}')

#----------------------------------------------------------------------------

def profiled_function(fn):
    """Decorator: show the function under its own name in the autograd profiler."""
    def decorator(*args, **kwargs):
        with torch.autograd.profiler.record_function(fn.__name__):
            return fn(*args, **kwargs)
    decorator.__name__ = fn.__name__
    decorator.__qualname__ = fn.__qualname__
    decorator.__doc__ = fn.__doc__
    return decorator

#----------------------------------------------------------------------------

class InfiniteSampler(torch.utils.data.Sampler):
    """Endless index stream over a dataset; each rank takes every `num_replicas`-th index.

    With shuffling, the order starts as a seeded permutation and keeps changing by random swaps
    within a window of `window_size` times the dataset length. `start_idx` (an addition to the
    toolkit's signature) resumes the stream after that many global steps (ranks x items each).
    """

    def __init__(self, dataset, rank=0, num_replicas=1, shuffle=True, seed=0, window_size=0.5, start_idx=0):
        assert len(dataset) > 0
        assert num_replicas > 0
        assert 0 <= rank < num_replicas
        assert 0 <= window_size <= 1
        super().__init__()
        self.dataset = dataset
        self.rank = rank
        self.num_replicas = num_replicas
        self.shuffle = shuffle
        self.seed = seed
        self.window_size = window_size
        self.start_idx = start_idx

    def __iter__(self):
        order = np.arange(len(self.dataset))
        rnd = None
        window = 0
        if self.shuffle:
            rnd = np.random.RandomState(self.seed)
            rnd.shuffle(order)
            window = int(np.rint(order.size * self.window_size))
        idx = 0
        while True:
            i = idx % order.size
            if idx >= self.start_idx and idx % self.num_replicas == self.rank:
                yield order[i]
            if window >= 2:
                j = (i - rnd.randint(window)) % order.size
                order[i], order[j] = order[j], order[i]
            idx += 1

#----------------------------------------------------------------------------
# Parameters and buffers.

def params_and_buffers(module):
    assert isinstance(module, torch.nn.Module)
    return list(module.parameters()) + list(module.buffers())

def named_params_and_buffers(module):
    assert isinstance(module, torch.nn.Module)
    return list(module.named_parameters()) + list(module.named_buffers())

def copy_params_and_buffers(src_module, dst_module, require_all=False):
    """Copy every parameter and buffer of `dst_module` that `src_module` has under the same name.

    Works whether or not the destination requires grad. With `require_all`, a name missing from
    the source raises a KeyError that lists the missing names.
    """
    assert isinstance(src_module, torch.nn.Module)
    assert isinstance(dst_module, torch.nn.Module)
    src_tensors = dict(named_params_and_buffers(src_module))
    dst_tensors = named_params_and_buffers(dst_module)
    missing = [name for name, _ in dst_tensors if name not in src_tensors]
    if require_all and missing:
        raise KeyError(f'copy_params_and_buffers: source lacks {len(missing)} tensors: {", ".join(missing[:8])}')
    with torch.no_grad():
        for name, tensor in dst_tensors:
            if name in src_tensors:
                src = src_tensors[name].detach()
                if src.shape != tensor.shape:
                    raise ValueError(f'copy_params_and_buffers: {name} has shape {list(src.shape)} in the source, {list(tensor.shape)} in the destination')
                tensor.copy_(src)

def rebuild_module(module, init_kwargs=None, *, cls=None, new_ok=None, dropped_ok=None):
    """A fresh instance of a persistent module built from init kwargs, with every tensor of `module` copied in.

    The new module is `cls(**init_kwargs)` (defaults: `type(module)` and `module.init_kwargs`, with
    `module.init_args` when `cls` is not given), built `.eval().requires_grad_(False)` (so tensors can
    be copied into it), then moved to `module`'s device and given its `training` flag. `module` is not
    changed. Nothing is lost silently: every parameter/buffer of `module` must have a place of the
    same name and shape in the new one, unless its name matches the regex `dropped_ok`; and every
    tensor of the new one must come from `module`, unless its name matches the regex `new_ok`
    (freshly initialised branches). This is the toolkit's one rebuild path (force_fp16, attaching
    or detaching injectors, wrapping networks).

    Example:
        >>> kwargs = G.init_kwargs
        >>> kwargs.synthesis_kwargs.num_fp16_res = 4
        >>> G16 = misc.rebuild_module(G, kwargs)
    """
    assert isinstance(module, torch.nn.Module)
    if cls is None:
        cls, args = type(module), tuple(getattr(module, 'init_args', ()))
        init_kwargs = module.init_kwargs if init_kwargs is None else init_kwargs
    else:
        args = ()
    new = cls(*args, **init_kwargs).eval().requires_grad_(False)
    src = dict(named_params_and_buffers(module))
    dst = dict(named_params_and_buffers(new))
    lost = [n for n in src if n not in dst and not (dropped_ok and re.fullmatch(dropped_ok, n))]
    if lost:
        raise KeyError(f'rebuild_module: {len(lost)} tensors of the {type(module).__name__} have no place in the rebuilt '
            f'{cls.__name__}: {", ".join(lost[:8])}')
    missing = [n for n in dst if n not in src and not (new_ok and re.fullmatch(new_ok, n))]
    if missing:
        raise KeyError(f'rebuild_module: the rebuilt {cls.__name__} has {len(missing)} tensors the {type(module).__name__} '
            f'lacks: {", ".join(missing[:8])}')
    copy_params_and_buffers(module, new)
    tensors = params_and_buffers(module)
    if tensors:
        new = new.to(tensors[0].device)
    return new.train(module.training)

#----------------------------------------------------------------------------

@contextlib.contextmanager
def ddp_sync(module, sync):
    """Inside the block, a DistributedDataParallel module syncs gradients only if `sync` is True."""
    assert isinstance(module, torch.nn.Module)
    if sync or not isinstance(module, torch.nn.parallel.DistributedDataParallel):
        yield
    else:
        with module.no_sync():
            yield

def params_digest(module, ignore_regex=None):
    """sha256 hex digest of every parameter and buffer of `module` (names matching ignore_regex skipped).

    Tensors are taken in sorted name order; for each, the text '<name>:<dtype>:<shape list>;' and
    then its raw bytes (contiguous, CPU) go into one sha256. Equal digests mean bit-identical
    weights; the training loop compares them across processes at every snapshot.
    """
    h = hashlib.sha256()
    for name, tensor in sorted(named_params_and_buffers(module), key=lambda item: item[0]):
        if ignore_regex is not None and re.fullmatch(ignore_regex, name):
            continue
        tensor = tensor.detach().cpu().contiguous()
        h.update(f'{name}:{tensor.dtype}:{list(tensor.shape)};'.encode())
        h.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()

def check_ddp_consistency(module, ignore_regex=None):
    """Assert that every parameter/buffer is identical on all ranks (names matching ignore_regex skipped)."""
    assert isinstance(module, torch.nn.Module)
    for name, tensor in named_params_and_buffers(module):
        fullname = type(module).__name__ + '.' + name
        if ignore_regex is not None and re.fullmatch(ignore_regex, fullname):
            continue
        tensor = tensor.detach()
        if tensor.is_floating_point():
            tensor = nan_to_num(tensor)
        other = tensor.clone()
        torch.distributed.broadcast(tensor=other, src=0)
        assert (tensor == other).all(), f'{fullname} differs between ranks'

#----------------------------------------------------------------------------

def print_module_summary(module, inputs, max_nesting=3, skip_redundant=True):
    """Run `module(*inputs)` once and print a table of submodules, parameter counts and output shapes."""
    assert isinstance(module, torch.nn.Module)
    assert not isinstance(module, torch.jit.ScriptModule)
    assert isinstance(inputs, (tuple, list))

    entries = []
    nesting = [0]
    def pre_hook(_mod, _inputs):
        nesting[0] += 1
    def post_hook(mod, _inputs, outputs):
        nesting[0] -= 1
        if nesting[0] <= max_nesting:
            outputs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
            outputs = [t for t in outputs if isinstance(t, torch.Tensor)]
            entries.append(dnnlib.EasyDict(mod=mod, outputs=outputs))
    hooks = [mod.register_forward_pre_hook(pre_hook) for mod in module.modules()]
    hooks += [mod.register_forward_hook(post_hook) for mod in module.modules()]
    try:
        outputs = module(*inputs)
    finally:
        for hook in hooks:
            hook.remove()

    # Count each tensor once, at the first (innermost) module that reports it.
    tensors_seen = set()
    for e in entries:
        e.unique_params = [t for t in e.mod.parameters() if id(t) not in tensors_seen]
        e.unique_buffers = [t for t in e.mod.buffers() if id(t) not in tensors_seen]
        e.unique_outputs = [t for t in e.outputs if id(t) not in tensors_seen]
        tensors_seen |= {id(t) for t in e.unique_params + e.unique_buffers + e.unique_outputs}
    if skip_redundant:
        entries = [e for e in entries if len(e.unique_params) or len(e.unique_buffers) or len(e.unique_outputs)]

    rows = [[type(module).__name__, 'Parameters', 'Buffers', 'Output shape', 'Datatype']]
    rows += [['---'] * len(rows[0])]
    param_total = 0
    buffer_total = 0
    submodule_names = {mod: name for name, mod in module.named_modules()}
    for e in entries:
        name = '<top-level>' if e.mod is module else submodule_names[e.mod]
        param_size = sum(t.numel() for t in e.unique_params)
        buffer_size = sum(t.numel() for t in e.unique_buffers)
        output_shapes = [str(list(t.shape)) for t in e.outputs]
        output_dtypes = [str(t.dtype).split('.')[-1] for t in e.outputs]
        rows += [[
            name + (':0' if len(e.outputs) >= 2 else ''),
            str(param_size) if param_size else '-',
            str(buffer_size) if buffer_size else '-',
            (output_shapes + ['-'])[0],
            (output_dtypes + ['-'])[0],
        ]]
        for idx in range(1, len(e.outputs)):
            rows += [[name + f':{idx}', '-', '-', output_shapes[idx], output_dtypes[idx]]]
        param_total += param_size
        buffer_total += buffer_size
    rows += [['---'] * len(rows[0])]
    rows += [['Total', str(param_total), str(buffer_total), '-', '-']]

    widths = [max(len(cell) for cell in column) for column in zip(*rows)]
    print()
    for row in rows:
        print('  '.join(cell + ' ' * (width - len(cell)) for cell, width in zip(row, widths)))
    print()
    return outputs

#----------------------------------------------------------------------------
