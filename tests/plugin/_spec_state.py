"""Test helpers shared by the plugin tests: published key lists and random state dicts built from them."""

from pathlib import Path

import numpy as np
import torch

SPEC = Path(__file__).resolve().parents[1] / 'data' / 'spec'     # copies of shared/spec's key lists

def spec_keys(file_name):
    """{key: (shape, dtype)} from a key list in tests/data/spec (copied from shared/spec)."""
    path = SPEC / file_name
    keys = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith('#'):
            continue
        key, shape, dtype = line.split('\t')
        keys[key] = ([int(v) for v in shape.strip('[]').split(',') if v.strip()], dtype.strip())
    return keys

def random_state(keys, gen, int_value=7):
    """Random tensors with the given names/shapes; weights scaled by fan-in, BN statistics kept sane."""
    state = {}
    for key, (shape, dtype) in keys.items():
        if dtype == 'int64':
            state[key] = torch.full(shape, int_value, dtype=torch.int64)
        elif key.endswith('running_var'):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        elif len(shape) >= 2:
            state[key] = torch.randn(shape, generator=gen) / float(np.sqrt(np.prod(shape[1:])))
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.1 + (1.0 if key.endswith('weight') else 0.0)
    return state
