"""Statistics reported during training and collected per tick (the lines of `stats.jsonl`).

`report(name, value)` can be called anywhere, in any process, with a scalar or a tensor of any
shape; every element counts as one sample. A `Collector` gathers what was reported since its last
`update()` (across processes when `init_multiprocessing` was called) and exposes num/mean/std.
Moments are kept in float64 as [count, sum, sum of squares].
"""

import re

import numpy as np
import torch

from .. import dnnlib

#----------------------------------------------------------------------------

_num_moments = 3              # [count, sum, sum of squares]
_counter_dtype = torch.float64 # Dtype of the accumulated moments.
_rank = 0                     # Rank of this process.
_sync_device = None           # Device used for the reduction across processes (None = single process).
_sync_called = False          # Whether _sync() has been called (no new names may appear after that).
_counters = dict()            # name -> {device: moments tensor}
_cumulative = dict()          # name -> moments summed over processes and updates

#----------------------------------------------------------------------------

def init_multiprocessing(rank, sync_device):
    """Call once per process before reporting; `sync_device` is None with a single process.

    Example:
        >>> training_stats.init_multiprocessing(rank=rank, sync_device=torch.device('cuda', rank) if num_gpus > 1 else None)
    """
    global _rank, _sync_device
    assert not _sync_called
    _rank = rank
    _sync_device = sync_device

#----------------------------------------------------------------------------

def report(name, value):
    """Add the elements of `value` (scalar, array or tensor) as samples of statistic `name`; returns `value`.

    Example:
        >>> loss = training_stats.report('Loss/G/loss', loss)
    """
    if name not in _counters:
        _counters[name] = dict()
    elems = torch.as_tensor(value)
    if elems.numel() == 0:
        return value
    elems = elems.detach().flatten().to(_counter_dtype)
    moments = torch.stack([torch.ones_like(elems).sum(), elems.sum(), elems.square().sum()])
    assert moments.ndim == 1 and moments.shape[0] == _num_moments
    device = moments.device
    if device not in _counters[name]:
        _counters[name][device] = torch.zeros_like(moments)
    _counters[name][device].add_(moments)
    return value

def report0(name, value):
    """Like report(), but only rank 0 contributes (the value is still returned on every rank)."""
    report(name, value if _rank == 0 else [])
    return value

#----------------------------------------------------------------------------

class Collector:
    """Collects the statistics whose names match `regex` between calls to `update()`.

    Example:
        >>> stats = training_stats.Collector(regex='Loss/.*')
        >>> ...                 # training step, which calls training_stats.report(...)
        >>> stats.update()
        >>> stats['Loss/G/loss'], stats.num('Loss/G/loss'), stats.as_dict()
    """

    def __init__(self, regex='.*', keep_previous=True):
        self._regex = re.compile(regex)
        self._keep_previous = keep_previous
        self._cumulative = dict()
        self._moments = dict()
        self.update()
        self._moments.clear()

    def names(self):
        return [name for name in _counters if self._regex.fullmatch(name)]

    def update(self):
        if not self._keep_previous:
            self._moments.clear()
        for name, cumulative in _sync(self.names()):
            if name not in self._cumulative:
                self._cumulative[name] = torch.zeros([_num_moments], dtype=_counter_dtype)
            delta = cumulative - self._cumulative[name]
            self._cumulative[name].copy_(cumulative)
            if float(delta[0]) != 0:
                self._moments[name] = delta

    def _get_delta(self, name):
        assert self._regex.fullmatch(name)
        if name not in self._moments:
            self._moments[name] = torch.zeros([_num_moments], dtype=_counter_dtype)
        return self._moments[name]

    def num(self, name):
        return int(self._get_delta(name)[0])

    def mean(self, name):
        delta = self._get_delta(name)
        if int(delta[0]) == 0:
            return float('nan')
        return float(delta[1] / delta[0])

    def std(self, name):
        delta = self._get_delta(name)
        if int(delta[0]) == 0 or not np.isfinite(float(delta[1])):
            return float('nan')
        if int(delta[0]) == 1:
            return float(0)
        mean = float(delta[1] / delta[0])
        raw_var = float(delta[2] / delta[0])
        return float(np.sqrt(max(raw_var - np.square(mean), 0)))

    def pending(self, name):
        """Moments [count, sum, sum of squares] reported for `name` that update() has not taken in yet.

        Collective when several processes report (every rank must call it).
        """
        assert self._regex.fullmatch(name)
        _counters.setdefault(name, dict())
        [(_, cumulative)] = _sync([name])
        seen = self._cumulative.get(name, torch.zeros([_num_moments], dtype=_counter_dtype))
        return (cumulative - seen).tolist()

    def add_pending(self, name, moments):
        """Make the next update() also count `moments` (as returned by pending(), e.g. from a snapshot)."""
        assert self._regex.fullmatch(name)
        if name not in self._cumulative:
            self._cumulative[name] = torch.zeros([_num_moments], dtype=_counter_dtype)
        self._cumulative[name] -= torch.as_tensor(moments, dtype=_counter_dtype)

    def as_dict(self):
        stats = dnnlib.EasyDict()
        for name in self.names():
            stats[name] = dnnlib.EasyDict(num=self.num(name), mean=self.mean(name), std=self.std(name))
        return stats

    def __getitem__(self, name):
        return self.mean(name)

#----------------------------------------------------------------------------

def _sync(names):
    """Sum each named counter over devices and processes, add it to the cumulative totals."""
    if len(names) == 0:
        return []
    global _sync_called
    _sync_called = True

    deltas = []
    device = _sync_device if _sync_device is not None else torch.device('cpu')
    for name in names:
        delta = torch.zeros([_num_moments], dtype=_counter_dtype, device=device)
        for counter in _counters[name].values():
            delta.add_(counter.to(device))
            counter.copy_(torch.zeros_like(counter))
        deltas.append(delta)
    deltas = torch.stack(deltas)

    if _sync_device is not None:
        torch.distributed.all_reduce(deltas)

    deltas = deltas.cpu()
    for idx, name in enumerate(names):
        if name not in _cumulative:
            _cumulative[name] = torch.zeros([_num_moments], dtype=_counter_dtype)
        _cumulative[name].add_(deltas[idx])
    return [(name, _cumulative[name]) for name in names]

#----------------------------------------------------------------------------
