"""Metric registry, evaluation and reporting (the run dir's metric-<name>.jsonl files).

Metrics that need detector weights take them from a local file (`inception_weights`, the
`--inception-weights` flag); `fid2k_pix` and `kid2k_pix` need none.

Example:
    >>> result = metric_main.calc_metric('fid2k_pix', G=G_ema, dataset_kwargs=training_set_kwargs)
    >>> result.results.fid2k_pix
"""

import json
import os
import time

import torch

from .. import dnnlib
from ..dnnlib import UserError
from . import frechet, kernel, metric_utils

#----------------------------------------------------------------------------

_metric_dict = dict() # name => fn

def register_metric(fn):
    """Decorator: make `fn(opts) -> dict of results` available under its function name."""
    assert callable(fn)
    _metric_dict[fn.__name__] = fn
    return fn

def is_valid_metric(metric):
    return metric in _metric_dict

def list_valid_metrics():
    return list(_metric_dict.keys())

def calc_metric(metric, **kwargs):
    """Evaluate one metric; kwargs go to MetricOptions (G, dataset_kwargs, device, inception_weights, ...)."""
    if not is_valid_metric(metric):
        raise UserError(f'--metrics: unknown metric {metric!r} (choose from {", ".join(list_valid_metrics())})')
    opts = metric_utils.MetricOptions(**kwargs)
    start = time.time()
    results = _metric_dict[metric](opts)
    total_time = time.time() - start
    return dnnlib.EasyDict(results=dnnlib.EasyDict(results), metric=metric, total_time=total_time,
        total_time_str=dnnlib.util.format_time(total_time), num_gpus=opts.num_gpus)

def report_metric(result_dict, run_dir=None, snapshot_pkl=None):
    """Print the result and append it as one JSON line to <run_dir>/metric-<name>.jsonl."""
    metric = result_dict['metric']
    assert is_valid_metric(metric)
    if run_dir is not None and snapshot_pkl is not None:
        snapshot_pkl = os.path.relpath(snapshot_pkl, run_dir)
    line = json.dumps(dict(result_dict, snapshot_pkl=snapshot_pkl, timestamp=time.time()))
    print(line)
    if run_dir is not None and os.path.isdir(run_dir):
        with open(os.path.join(run_dir, f'metric-{metric}.jsonl'), 'at') as f:
            f.write(line + '\n')

#----------------------------------------------------------------------------
# Feature-space distances.

def _pixel_features(opts, num_gen, max_real):
    reals = torch.cat(list(metric_utils.iterate_real_images(opts, max_real)))    # [NCHW] uint8
    extractor = metric_utils.PixelPCAFeatures().fit([reals])
    gen = metric_utils.collect_features(extractor, metric_utils.iterate_generated_images(opts, num_gen), 'generated', opts.progress)
    return extractor(reals), gen

def _inception_features(opts, num_gen, max_real):
    extractor = metric_utils.InceptionFeatures(opts.inception_weights, opts.device)
    real = metric_utils.real_features(opts, ('inception', opts.inception_weights), extractor, max_real)
    gen = metric_utils.collect_features(extractor, metric_utils.iterate_generated_images(opts, num_gen), 'generated', opts.progress)
    return real, gen

#----------------------------------------------------------------------------
# The metrics.

def _inception_metric(name, num_gen, max_real, kind):
    """Register an Inception-feature FID or KID under `name`."""
    def metric(opts):
        real, gen = _inception_features(opts, num_gen=num_gen, max_real=max_real)
        if kind == 'fid':
            return {name: frechet.fid_from_features(real, gen)}
        return {name: kernel.kid_from_features(real, gen, num_subsets=100, max_subset_size=1000)}
    metric.__name__ = name
    return register_metric(metric)

_inception_metric('fid50k_full', num_gen=50000, max_real=None, kind='fid')
_inception_metric('kid50k_full', num_gen=50000, max_real=1000000, kind='kid')
_inception_metric('fid50k', num_gen=50000, max_real=50000, kind='fid')
_inception_metric('kid50k', num_gen=50000, max_real=50000, kind='kid')

@register_metric
def fid2k_pix(opts):
    real, gen = _pixel_features(opts, num_gen=2000, max_real=10000)
    return dict(fid2k_pix=frechet.fid_from_features(real, gen))

@register_metric
def kid2k_pix(opts):
    real, gen = _pixel_features(opts, num_gen=2000, max_real=10000)
    return dict(kid2k_pix=kernel.kid_from_features(real, gen, num_subsets=50, max_subset_size=1000))

#----------------------------------------------------------------------------
