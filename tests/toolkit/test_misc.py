"""torch_utils.misc: shape checks, constants, parameter copying, sampler, module summary."""

import pytest
import torch

from stylegan2_ada_pytorch.torch_utils import misc


def test_assert_shape():
    x = torch.zeros(2, 3, 4)
    misc.assert_shape(x, [None, 3, 4])
    with pytest.raises(AssertionError, match='dimension 1'):
        misc.assert_shape(x, [2, 5, 4])
    with pytest.raises(AssertionError, match='number of dimensions'):
        misc.assert_shape(x, [2, 3])

def test_constant_is_cached_and_broadcast():
    a = misc.constant([1.0, 2.0], shape=[3, 2])
    b = misc.constant([1.0, 2.0], shape=[3, 2])
    assert a is b
    assert torch.equal(a, torch.tensor([[1.0, 2.0]] * 3))
    assert misc.constant(1, dtype=torch.float64).dtype == torch.float64

class _Net(torch.nn.Module):
    def __init__(self, extra=False):
        super().__init__()
        self.fc = torch.nn.Linear(3, 2)
        self.register_buffer('stat', torch.zeros(2))
        if extra:
            self.more = torch.nn.Linear(2, 2)

def test_copy_params_and_buffers_into_grad_leaves():
    src, dst = _Net(), _Net()
    src.stat.fill_(3.0)
    dst.requires_grad_(True)  # the toolkit's version failed here (in-place on a leaf requiring grad)
    misc.copy_params_and_buffers(src, dst, require_all=True)
    assert torch.equal(dst.fc.weight, src.fc.weight) and torch.equal(dst.stat, src.stat)
    assert dst.fc.weight.requires_grad

def test_copy_params_require_all_and_shape_mismatch():
    with pytest.raises(KeyError, match='more.weight'):
        misc.copy_params_and_buffers(_Net(), _Net(extra=True), require_all=True)
    misc.copy_params_and_buffers(_Net(), _Net(extra=True), require_all=False)
    a, b = _Net(), _Net()
    b.fc = torch.nn.Linear(3, 5)
    with pytest.raises(ValueError, match='fc.weight has shape'):
        misc.copy_params_and_buffers(a, b)

def test_infinite_sampler_partitions_ranks():
    data = list(range(10))
    streams = []
    for rank in range(2):
        it = iter(misc.InfiniteSampler(data, rank=rank, num_replicas=2, shuffle=False))
        streams.append([int(next(it)) for _ in range(5)])
    assert streams == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]
    def take(seed, n=50):
        it = iter(misc.InfiniteSampler(data, seed=seed))
        return [int(next(it)) for _ in range(n)]
    assert take(1) == take(1) and take(1) != take(2)  # deterministic per seed
    assert set(take(1, 200)) == set(data) and take(1, 10) != data
    it = iter(misc.InfiniteSampler(data, seed=1, rank=1, num_replicas=2, start_idx=30))
    full = iter(misc.InfiniteSampler(data, seed=1, rank=1, num_replicas=2))
    assert [int(next(it)) for _ in range(20)] == [int(next(full)) for _ in range(35)][15:]

def test_print_module_summary(capsys):
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    out = misc.print_module_summary(net, [torch.zeros(2, 3)])
    assert out.shape == (2, 1)
    text = capsys.readouterr().out
    total = [line for line in text.splitlines() if line.startswith('Total')][0]
    assert total.split()[1] == str(3 * 4 + 4 + 4 + 1)
    assert '[2, 4]' in text

def test_profiled_function_keeps_name():
    @misc.profiled_function
    def my_op(x):
        return x + 1
    assert my_op.__name__ == 'my_op' and my_op(1) == 2
