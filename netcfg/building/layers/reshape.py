"""Torch build functions of netcfg/catalogue/reshape.py."""

from __future__ import annotations

import torch
from torch import nn

from netcfg.catalogue import reshape as d
from netcfg.catalogue.registry import builds


class Reshape(nn.Module):
    """Reshapes each sample, keeping dimension 0."""

    def __init__(self, shape: list[int]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={list(self.shape)}"


class Permute(nn.Module):
    def __init__(self, dims: list[int]):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(self.dims)

    def extra_repr(self) -> str:
        return f"dims={list(self.dims)}"


class Roll(nn.Module):
    """torch.roll of the input by `shifts` along `dims`."""

    def __init__(self, shifts: list[int], dims: list[int]):
        super().__init__()
        self.shifts, self.dims = tuple(shifts), tuple(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.roll(x, self.shifts, self.dims)

    def extra_repr(self) -> str:
        return f"shifts={list(self.shifts)}, dims={list(self.dims)}"


class Take(nn.Module):
    """x[..., key] along dimension `dim`: an index (select, the dimension goes) or a slice (it stays)."""

    def __init__(self, dim: int, key: int | slice):
        super().__init__()
        self.dim, self.key = dim, key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[(slice(None),) * self.dim + (self.key,)]

    def extra_repr(self) -> str:
        return f"dim={self.dim}, key={self.key}"


@builds("flatten")
def flatten(a: d.Flatten, xs: list, ctx) -> nn.Module:
    return nn.Flatten(a.start_dim, a.end_dim)


@builds("reshape")
def reshape(a: d.Reshape, xs: list, ctx) -> nn.Module:
    return Reshape(a.shape)


@builds("identity")
def identity(a: d.Identity, xs: list, ctx) -> nn.Module:
    return nn.Identity()


@builds("permute")
def permute(a: d.Permute, xs: list, ctx) -> nn.Module:
    return Permute(a.resolved(len(xs[0].shape)))


@builds("select")
def select(a: d.Select, xs: list, ctx) -> nn.Module:
    return Take(a.dim % len(xs[0].shape), a.index)


@builds("slice")
def slice_(a: d.Slice, xs: list, ctx) -> nn.Module:
    return Take(a.dim % len(xs[0].shape), slice(a.start, a.stop, a.step))


@builds("pixel_shuffle")
def pixel_shuffle(a: d.PixelShuffle, xs: list, ctx) -> nn.Module:
    return nn.PixelShuffle(a.upscale_factor)


@builds("roll")
def roll(a: d.Roll, xs: list, ctx) -> nn.Module:
    return Roll(*a.pairs(len(xs[0].shape)))
