"""Layers that move, pick or regroup values without parameters."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from netcfg.catalogue.base import SMALL, Dim, Index, Pos, Rearrange, Shape, prod
from netcfg.catalogue.shapes import ShapeError, fmt


class Flatten(Rearrange):
    """Flattens dimensions start_dim..end_dim into one."""

    type: Literal["flatten"]
    aliases = True
    start_dim: Dim = 1
    """First dimension to flatten."""
    end_dim: Dim = -1
    """Last dimension to flatten."""

    def out_shape(self, shapes: list[Shape]) -> Shape:
        shape = shapes[0]
        rank = len(shape)
        start, end = self.start_dim, self.end_dim
        if not (-rank <= start < rank and -rank <= end < rank) or start % rank > end % rank:
            raise ShapeError(f"cannot flatten dims {start}..{end} of a {rank}-dimensional input")
        start, end = start % rank, end % rank
        return (*shape[:start], prod(shape[start : end + 1]), *shape[end + 1 :])


class Reshape(Rearrange):
    """Reshapes each sample, keeping the batch dimension: [N, ...] -> [N, *shape]."""

    type: Literal["reshape"]
    aliases = True
    shape: list[Annotated[int, Field(ge=-1, le=2**31 - 1)]] = Field(min_length=1, max_length=8)
    """New per-sample shape; one entry may be -1."""

    def out_shape(self, shapes: list[Shape]) -> Shape:
        if self.shape.count(-1) > 1:
            raise ShapeError("at most one entry of shape may be -1", key="shape")
        shape = shapes[0]
        per_sample, known = prod(shape[1:]), prod(s for s in self.shape if s != -1)
        sizes = list(self.shape)
        if -1 in sizes and known and per_sample % known == 0:
            sizes[sizes.index(-1)] = per_sample // known
        if -1 in sizes or prod(sizes) != per_sample:
            # PyTorch's words for the same mistake
            raise ShapeError(f"shape '{[int(shape[0]), *self.shape]}' is invalid for input of size {prod(shape)}")
        return (shape[0], *sizes)


class Identity(Rearrange):
    """Returns its input unchanged."""

    type: Literal["identity"]
    aliases = True

    passes_input = True

    def out_shape(self, shapes: list[Shape]) -> Shape:
        return shapes[0]


class Permute(Rearrange):
    """Reorders the dimensions, batch included: output dimension i is input dimension dims[i] (torch.permute)."""

    type: Literal["permute"]
    aliases = True
    dims: list[Dim] = Field(min_length=2, max_length=8)
    """A permutation of the input's dimensions, e.g. [0, 2, 3, 1] for [N, C, H, W] -> [N, H, W, C]."""

    def resolved(self, rank: int) -> list[int | None]:
        return [d % rank if -rank <= d < rank else None for d in self.dims]

    def out_shape(self, shapes: list[Shape]) -> Shape:
        shape = shapes[0]
        rank = len(shape)
        dims = self.resolved(rank)
        if len(dims) != rank or sorted(d for d in dims if d is not None) != list(range(rank)):
            raise ShapeError(
                f"dims {self.dims} is not a permutation of the {rank} dimensions of input {fmt(shape)}", key="dims"
            )
        return tuple(shape[d] for d in dims)


class PixelShuffle(Rearrange):
    """Channel blocks into space: [N, C * r^2, H, W] -> [N, C, H * r, W * r] (torch.nn.PixelShuffle).

    ESPCN's sub-pixel upsampling."""

    type: Literal["pixel_shuffle"]
    upscale_factor: Pos
    """r: the factor by which height and width grow (the channels shrink by r^2)."""

    def out_shape(self, shapes: list[Shape]) -> Shape:
        shape, r = shapes[0], self.upscale_factor
        if len(shape) < 3:
            raise ShapeError(f"pixel_shuffle needs an input [..., C, H, W], got {fmt(shape)}")
        channels, height, width = shape[-3:]
        if channels % (r * r):
            raise ShapeError(
                f"upscale_factor {r} needs channels divisible by {r * r}, the input has {channels}",
                key="upscale_factor",
            )
        return (*shape[:-3], channels // (r * r), height * r, width * r)


def along(dim: int, shape: Shape, layer: str) -> int:
    """`dim` resolved for `shape`; not the batch dimension."""
    rank = len(shape)
    if not -rank <= dim < rank:
        raise ShapeError(f"{layer} over dim {dim} of input {fmt(shape)}", key="dim")
    if dim % rank == 0:
        raise ShapeError(f"{layer} over dim {dim}: that is the batch dimension", key="dim")
    return dim % rank


class Select(Rearrange):
    """Keeps one index along `dim` and drops that dimension: x[:, 0] (a class token) for dim 1, index 0."""

    type: Literal["select"]
    aliases = True
    index: Index
    """The index kept (negative counts from the end)."""
    dim: Dim = 1
    """The dimension (not the batch dimension 0)."""

    def out_shape(self, shapes: list[Shape]) -> Shape:
        shape = shapes[0]
        dim = along(self.dim, shape, "select")
        if not -shape[dim] <= self.index < shape[dim]:
            raise ShapeError(
                f"index {self.index} is out of range for dim {self.dim} of input {fmt(shape)}", key="index"
            )
        return shape[:dim] + shape[dim + 1 :]


class Slice(Rearrange):
    """Keeps start:stop:step along `dim` (the dimension stays): x[:, 1:] for dim 1, start 1."""

    type: Literal["slice"]
    aliases = True
    start: Index | None = None
    """First index kept (default 0; negative counts from the end)."""
    stop: Index | None = None
    """Index after the last one kept (default: the end)."""
    step: Pos = 1
    """Keep every step-th index."""
    dim: Dim = 1
    """The dimension (not the batch dimension 0)."""

    def out_shape(self, shapes: list[Shape]) -> Shape:
        shape = shapes[0]
        dim = along(self.dim, shape, "slice")
        kept = len(range(*slice(self.start, self.stop, self.step).indices(shape[dim])))
        if kept == 0:
            raise ShapeError(
                f"{self.start}:{self.stop}:{self.step} keeps nothing of dim {self.dim} of input {fmt(shape)}",
                key="start",
            )
        return (*shape[:dim], kept, *shape[dim + 1 :])


class Roll(Rearrange):
    """Shifts values along dimensions, wrapping around (torch.roll); the batch is never rolled.

    Swin's shifted windows roll [N, H, W, C] by shifts [-3, -3] over dims [1, 2] (and back by [3, 3])."""

    type: Literal["roll"]
    shifts: Index | Annotated[list[Index], Field(min_length=1, max_length=8)]
    """Places to shift by along each of `dims` (negative: towards index 0); one number per dimension."""
    dims: Dim | Annotated[list[Dim], Field(min_length=1, max_length=8)]
    """The dimensions rolled, as many as `shifts` (not the batch dimension 0)."""

    def pairs(self, rank: int) -> tuple[list[int], list[int]]:
        """(shifts, dims) as lists, the dims resolved for a `rank`-dimensional input."""
        return _listed(self.shifts), [d % rank for d in _listed(self.dims)]

    def out_shape(self, shapes: list[Shape]) -> Shape:
        shifts, dims = _listed(self.shifts), _listed(self.dims)
        if len(shifts) != len(dims):
            raise ShapeError(
                f"roll needs one shift per dimension: shifts has {len(shifts)}, dims has {len(dims)}", key="shifts"
            )
        for dim in dims:
            along(dim, shapes[0], "roll")
        return shapes[0]

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        # torch.roll over several dimensions rolls one at a time: a whole copy per dimension (ids: 8 bytes)
        return len(_listed(self.dims)) * max(itemsize, 8) * prod(shapes[0]) + SMALL


def _listed(value: int | list[int]) -> list[int]:
    return [value] if isinstance(value, int) else list(value)
