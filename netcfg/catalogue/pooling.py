"""Pooling and resizing over the trailing spatial dimensions of [N, C, ...] (or [C, ...])."""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from netcfg.catalogue.base import SMALL, IntOrPair, NonNeg, Pos, Rearrange, Shape, pair, prod
from netcfg.catalogue.shapes import ShapeError, check_rank, fmt, window_out


class _Pool(Rearrange):
    kernel_size: IntOrPair
    """Window size."""
    stride: IntOrPair | None = None
    """Window stride; default: kernel_size."""
    padding: NonNeg | list[NonNeg] = 0
    """Implicit padding on each side."""
    ceil_mode: bool = False
    """Round the output size up: a last window that starts inside the input is kept."""

    rank: ClassVar[int] = 2

    def out_shape(self, shapes: list[Shape]) -> Shape:
        shape, rank = shapes[0], self.rank
        check_rank(shape, rank + 1, self.type, exact=(rank + 1, rank + 2))
        stride = self.stride if self.stride is not None else self.kernel_size
        if any(2 * p > k for p, k in zip(pair(self.padding, rank), pair(self.kernel_size, rank), strict=False)):
            raise ShapeError("padding must be at most half the kernel size", key="padding")
        sizes = window_out(shape, rank, self.kernel_size, stride, self.padding, ceil_mode=self.ceil_mode)
        return (*shape[:-rank], *sizes)

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        return SMALL


def _indices(out: Shape) -> int:
    """A max pooling computes the position of each maximum (int64) along with it."""
    return 8 * prod(out) + SMALL


class _AvgPool(_Pool):
    count_include_pad: bool = True
    """Count the zero padding in the mean."""


class MaxPool1d(_Pool):
    """Max over windows of [N, C, L]."""

    type: Literal["maxpool1d"]
    rank = 1
    float_only = True  # PyTorch has no integer max_pool1d kernel

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        return _indices(out)


class MaxPool2d(_Pool):
    """Max over windows of [N, C, H, W]."""

    type: Literal["maxpool2d"]

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        return _indices(out)


class AvgPool1d(_AvgPool):
    """Mean over windows of [N, C, L]."""

    type: Literal["avgpool1d"]
    rank = 1


class AvgPool2d(_AvgPool):
    """Mean over windows of [N, C, H, W]."""

    type: Literal["avgpool2d"]


class _Adaptive(Rearrange):
    rank: ClassVar[int] = 2
    float_only = True  # PyTorch has no integer kernels for these

    def out_shape(self, shapes: list[Shape]) -> Shape:
        shape, rank = shapes[0], self.rank
        check_rank(shape, rank + 1, self.type, exact=(rank + 1, rank + 2))
        size = pair(self.output_size, rank)
        if len(size) != rank:
            raise ShapeError(f"output_size needs {rank} values", key="output_size")
        return (*shape[:-rank], *size)

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        widening = 4 * (prod(shapes[0]) + prod(out)) if itemsize < 4 else 0  # 16-bit: averaged as float32
        return widening + SMALL


class AdaptiveAvgPool1d(_Adaptive):
    """Mean pooling to a fixed output length."""

    type: Literal["adaptive_avgpool1d"]
    output_size: Pos = 1
    """Output length."""
    rank = 1


class AdaptiveAvgPool2d(_Adaptive):
    """Mean pooling to a fixed output size (as before a ResNet's classifier)."""

    type: Literal["adaptive_avgpool2d"]
    output_size: IntOrPair = 1
    """Output height and width."""


class AdaptiveMaxPool2d(_Adaptive):
    """Max pooling to a fixed output size."""

    type: Literal["adaptive_maxpool2d"]
    output_size: IntOrPair = 1
    """Output height and width."""

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        return _indices(out)


Factor = Annotated[float, Field(gt=0, le=1024)]
_MODE_RANKS = {"nearest": (3, 4), "linear": (3,), "bilinear": (4,), "bicubic": (4,)}


class Upsample(Rearrange):
    """Resizes [N, C, L] or [N, C, H, W] by `scale_factor` or to `size` (torch.nn.Upsample)."""

    type: Literal["upsample"]
    scale_factor: Factor | list[Factor] | None = None
    """Multiplier of each spatial size (give this or size)."""
    size: IntOrPair | None = None
    """Output spatial size (give this or scale_factor)."""
    mode: Literal["nearest", "linear", "bilinear", "bicubic"] = "nearest"
    """Interpolation: nearest; linear for [N, C, L]; bilinear or bicubic for [N, C, H, W]."""
    align_corners: bool | None = None
    """For linear, bilinear and bicubic: align the corner pixels of input and output."""

    float_only = True

    def out_shape(self, shapes: list[Shape]) -> Shape:
        shape = shapes[0]
        self._check(shape)
        field = "size" if self.size is not None else "scale_factor"
        given = self.size if self.size is not None else self.scale_factor
        spatial = len(shape) - 2
        values = [given] * spatial if not isinstance(given, list) else given
        if len(values) != spatial:
            raise ShapeError(f"{field} needs {spatial} values", key=field)
        if self.size is not None:
            sizes = [int(v) for v in values]
        else:
            sizes = [math.floor(n * f) for n, f in zip(shape[2:], values, strict=True)]
        if any(s < 1 for s in sizes) or any(s > 2**31 - 1 for s in sizes):
            raise ShapeError(f"output size {sizes} for input {fmt(shape)}", key="scale_factor")
        return (*shape[:2], *sizes)

    def _check(self, shape: Shape) -> None:
        if len(shape) not in _MODE_RANKS[self.mode]:
            wanted = " or ".join(f"{r}-dimensional" for r in _MODE_RANKS[self.mode])
            raise ShapeError(
                f"upsample mode '{self.mode}' needs a {wanted} input [N, C, ...], got {fmt(shape)}", key="mode"
            )
        if (self.scale_factor is None) == (self.size is None):
            raise ShapeError("give one of scale_factor and size", key="scale_factor")
        if self.align_corners is not None and self.mode == "nearest":
            raise ShapeError("align_corners only applies to linear, bilinear and bicubic", key="align_corners")

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        # the input and the output in another memory layout (channels last), then the output back
        return itemsize * (prod(shapes[0]) + prod(out)) + SMALL
