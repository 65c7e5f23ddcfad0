"""Merges: several inputs combined into one output."""

from __future__ import annotations

from typing import Literal

from netcfg.catalogue.base import Dim, Rearrange, Shape, prod
from netcfg.catalogue.shapes import ShapeError, broadcast, fmt


def merge_shape(kind: str, dim: int, shapes: list[Shape]) -> Shape:
    """The output shape of merging inputs of these shapes by `kind`; a clear error when they don't fit."""
    if kind in ("add", "mul"):
        try:
            return broadcast(*shapes)
        except ShapeError:
            raise ShapeError(f"cannot {kind} inputs of shapes {', '.join(fmt(s) for s in shapes)}") from None
    if kind == "stack":
        return _stack(shapes, dim)
    return _concat(shapes, dim)


def _stack(shapes: list[Shape], dim: int) -> Shape:
    if len(set(shapes)) > 1:
        raise ShapeError(f"cannot stack inputs of different shapes {', '.join(fmt(s) for s in shapes)}")
    rank = len(shapes[0]) + 1
    if not -rank <= dim < rank:
        raise ShapeError(f"cannot stack {rank - 1}-dimensional inputs along dim {dim}")
    out = list(shapes[0])
    out.insert(dim % rank, len(shapes))
    return tuple(out)


def _concat(shapes: list[Shape], dim: int) -> Shape:
    listed = ", ".join(fmt(s) for s in shapes)
    rank = len(shapes[0])
    if not -rank <= dim < rank or any(len(s) != rank for s in shapes):
        raise ShapeError(f"cannot concat inputs of shapes {listed} along dim {dim}")
    axis = dim % rank
    if len({s[:axis] + s[axis + 1 :] for s in shapes}) > 1:
        raise ShapeError(f"cannot concat inputs of shapes {listed} along dim {dim}: the other dimensions differ")
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    return tuple(out)


class _Merge(Rearrange):
    def out_shape(self, shapes: list[Shape]) -> Shape:
        return merge_shape(self.type, getattr(self, "dim", -1), shapes)


class _Pairwise(_Merge):
    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        # ((a + b) + c) + ...: the running result and the next one live together
        return itemsize * prod(out) if len(shapes) > 2 else 0


class Add(_Pairwise):
    """Elementwise sum of all inputs (broadcasting)."""

    type: Literal["add"]


class Mul(_Pairwise):
    """Elementwise product of all inputs (broadcasting)."""

    type: Literal["mul"]


class Concat(_Merge):
    """Concatenation of all inputs along `dim`."""

    type: Literal["concat"]
    dim: Dim = -1
    """Dimension to concatenate along."""


class Stack(_Merge):
    """Stacks all inputs along a new dimension `dim`."""

    type: Literal["stack"]
    dim: Dim = 0
    """Position of the new dimension."""
