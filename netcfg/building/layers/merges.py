"""Torch build functions of netcfg/catalogue/merges.py, and the merge modules composites use."""

from __future__ import annotations

import torch
from torch import nn

from netcfg.catalogue.merges import merge_shape
from netcfg.catalogue.registry import builds


class Add(nn.Module):
    """Sum of all inputs."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Mul(nn.Module):
    """Product of all inputs."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out


class Concat(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Stack(Concat):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.stack(xs, dim=self.dim)


def merge_module(kind: str, dim: int) -> nn.Module:
    return {"add": Add, "mul": Mul}[kind]() if kind in ("add", "mul") else {"concat": Concat, "stack": Stack}[kind](dim)


def merged(kind: str, dim: int, xs: list) -> torch.Tensor:
    """The meta output of merging `xs`: shape by the merge's rule, dtype promoted as PyTorch does."""
    dtype = xs[0].dtype
    for x in xs[1:]:
        dtype = torch.promote_types(dtype, x.dtype)
    return torch.empty(merge_shape(kind, dim, [tuple(x.shape) for x in xs]), dtype=dtype, device="meta")


def _merge(a, xs: list, ctx) -> nn.Module:
    return merge_module(a.type, getattr(a, "dim", -1))


for _kind in ("add", "mul", "concat", "stack"):
    builds(_kind)(_merge)
