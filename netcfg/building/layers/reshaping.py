"""Layers that move, pick or resize values without parameters: permute, select, slice, upsample."""

from __future__ import annotations

import math

import torch
from torch import nn

from netcfg.catalogue import nodes as c
from netcfg.catalogue.registry import builds
from netcfg.catalogue.shapes import ShapeError, fmt, meta_like


class Permute(nn.Module):
    def __init__(self, dims: list[int]):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(self.dims)

    def extra_repr(self) -> str:
        return f"dims={list(self.dims)}"


@builds("permute")
def permute(a: c.Permute, xs: list, ctx) -> tuple:
    shape = tuple(xs[0].shape)
    rank = len(shape)
    dims = [d % rank if -rank <= d < rank else None for d in a.dims]
    if len(dims) != rank or sorted(d for d in dims if d is not None) != list(range(rank)):
        raise ShapeError(f"dims {a.dims} is not a permutation of the {rank} dimensions of input {fmt(shape)}",
                         key="dims")  # fmt: skip
    return Permute(dims), meta_like(xs[0], [shape[d] for d in dims])


def _dim(dim: int, shape: tuple, layer: str) -> int:
    rank = len(shape)
    if not -rank <= dim < rank:
        raise ShapeError(f"{layer} over dim {dim} of input {fmt(shape)}", key="dim")
    if dim % rank == 0:
        raise ShapeError(f"{layer} over dim {dim}: that is the batch dimension", key="dim")
    return dim % rank


class Take(nn.Module):
    """x[..., key] along dimension `dim`: an index (select, the dimension goes) or a slice (it stays)."""

    def __init__(self, dim: int, key: int | slice):
        super().__init__()
        self.dim, self.key = dim, key

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[(slice(None),) * self.dim + (self.key,)]

    def extra_repr(self) -> str:
        return f"dim={self.dim}, key={self.key}"


@builds("select")
def select(a: c.Select, xs: list, ctx) -> tuple:
    shape = tuple(xs[0].shape)
    dim = _dim(a.dim, shape, "select")
    if not -shape[dim] <= a.index < shape[dim]:
        raise ShapeError(f"index {a.index} is out of range for dim {a.dim} of input {fmt(shape)}", key="index")
    return Take(dim, a.index), meta_like(xs[0], shape[:dim] + shape[dim + 1 :])


@builds("slice")
def slice_(a: c.Slice, xs: list, ctx) -> tuple:
    shape = tuple(xs[0].shape)
    dim = _dim(a.dim, shape, "slice")
    kept = len(range(*slice(a.start, a.stop, a.step).indices(shape[dim])))
    if kept == 0:
        raise ShapeError(f"{a.start}:{a.stop}:{a.step} keeps nothing of dim {a.dim} of input {fmt(shape)}",
                         key="start")  # fmt: skip
    return Take(dim, slice(a.start, a.stop, a.step)), meta_like(xs[0], shape[:dim] + (kept,) + shape[dim + 1 :])


_MODE_RANKS = {"nearest": (3, 4), "linear": (3,), "bilinear": (4,), "bicubic": (4,)}


@builds("upsample")
def upsample(a: c.Upsample, xs: list, ctx) -> tuple:
    shape = tuple(xs[0].shape)
    if len(shape) not in _MODE_RANKS[a.mode]:
        wanted = " or ".join(f"{r}-dimensional" for r in _MODE_RANKS[a.mode])
        raise ShapeError(f"upsample mode '{a.mode}' needs a {wanted} input [N, C, ...], got {fmt(shape)}", key="mode")
    if (a.scale_factor is None) == (a.size is None):
        raise ShapeError("give one of scale_factor and size", key="scale_factor")
    if a.align_corners is not None and a.mode == "nearest":
        raise ShapeError("align_corners only applies to linear, bilinear and bicubic", key="align_corners")
    spatial = len(shape) - 2
    given = a.size if a.size is not None else a.scale_factor
    values = [given] * spatial if not isinstance(given, list) else given
    if len(values) != spatial:
        raise ShapeError(f"{'size' if a.size is not None else 'scale_factor'} needs {spatial} values",
                         key="size" if a.size is not None else "scale_factor")  # fmt: skip
    if a.size is not None:
        sizes = [int(v) for v in values]
    else:
        sizes = [math.floor(n * f) for n, f in zip(shape[2:], values, strict=True)]
    if any(s < 1 for s in sizes) or any(s > 2**31 - 1 for s in sizes):
        raise ShapeError(f"output size {sizes} for input {fmt(shape)}", key="scale_factor")
    size = tuple(a.size) if isinstance(a.size, list) else a.size
    factor = tuple(a.scale_factor) if isinstance(a.scale_factor, list) else a.scale_factor
    module = nn.Upsample(size=size, scale_factor=factor, mode=a.mode, align_corners=a.align_corners)
    return module, meta_like(xs[0], (*shape[:2], *sizes))
