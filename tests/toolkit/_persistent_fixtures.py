"""Persistent classes used by test_persistence.py (they must live at the top level of a module)."""

import torch

from stylegan2_ada_pytorch.torch_utils import persistence


@persistence.persistent_class
class Affine(torch.nn.Module):
    def __init__(self, in_features, out_features, scale=1.0, cfg=None):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(out_features, in_features))
        self.register_buffer('offset', torch.randn(out_features))
        self.scale = scale
        self.cfg = cfg

    def forward(self, x):
        return x @ self.weight.t() * self.scale + self.offset


@persistence.persistent_class
class Pair(torch.nn.Module):
    def __init__(self, features):
        super().__init__()
        self.a = Affine(features, features, scale=0.5)
        self.b = Affine(features, features, cfg=dict(mode='b'))

    def forward(self, x):
        return self.b(self.a(x))
