"""Torch build functions of netcfg/catalogue/activations.py."""

from __future__ import annotations

import torch
from torch import nn

from netcfg.catalogue.registry import builds

_MAKE = {
    "relu": lambda a: nn.ReLU(),
    "gelu": lambda a: nn.GELU(approximate=a.approximate),
    "silu": lambda a: nn.SiLU(),
    "tanh": lambda a: nn.Tanh(),
    "sigmoid": lambda a: nn.Sigmoid(),
    "softmax": lambda a: nn.Softmax(dim=a.dim),
    "log_softmax": lambda a: nn.LogSoftmax(dim=a.dim),
    "leaky_relu": lambda a: nn.LeakyReLU(a.negative_slope),
    "elu": lambda a: nn.ELU(a.alpha),
    "softplus": lambda a: nn.Softplus(a.beta),
    "relu6": lambda a: nn.ReLU6(),
    "hardtanh": lambda a: nn.Hardtanh(a.min_val, a.max_val),
    "hardswish": lambda a: nn.Hardswish(),
    "hardsigmoid": lambda a: nn.Hardsigmoid(),
    "mish": lambda a: nn.Mish(),
    "dropout": lambda a: nn.Dropout(a.p),
}


def _from_args(make):
    return lambda a, xs, ctx: make(a)


for _name, _make in _MAKE.items():
    builds(_name)(_from_args(_make))


@builds("prelu")
def prelu(a, xs: list, ctx) -> nn.Module:
    return nn.PReLU(int(xs[0].shape[1]) if a.per_channel else 1, init=a.init)


class DropPath(nn.Module):
    """Stochastic depth: in training each sample is zeroed with probability p (survivors scaled by
    1 / (1 - p) when scale_by_keep); the identity in eval."""

    def __init__(self, p: float, scale_by_keep: bool):
        super().__init__()
        self.p, self.scale_by_keep = p, scale_by_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * (mask / keep if self.scale_by_keep else mask)

    def extra_repr(self) -> str:
        return f"p={self.p}, scale_by_keep={self.scale_by_keep}"


@builds("drop_path")
def drop_path(a, xs: list, ctx) -> nn.Module:
    return DropPath(a.p, a.scale_by_keep)
