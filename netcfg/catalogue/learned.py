"""Layers that are one learned tensor: a class token to prepend, a per-channel scale."""

from __future__ import annotations

from typing import Literal

from netcfg.catalogue.base import Elementwise, Layer, Pos, Shape, last
from netcfg.catalogue.shapes import ShapeError, check_rank, expect_size, fmt


class ClassToken(Layer):
    """Prepends a learned token to a sequence: [N, T, dim] -> [N, T + 1, dim] (ViT's class token).

    Its parameter `token` [1, 1, dim] starts at zeros, as in torchvision's ViT."""

    type: Literal["class_token"]
    dim: Pos | None = None
    """Token width (the input's last dimension); inferred when omitted, checked when given."""

    def out_shape(self, shapes: list[Shape]) -> Shape:
        shape = shapes[0]
        if len(shape) != 3:
            raise ShapeError(f"class_token needs a sequence [N, T, dim], got {fmt(shape)}")
        dim = expect_size(shape, -1, self.dim, "dim")
        return (shape[0], shape[1] + 1, dim)

    def elements(self, shapes: list[Shape]) -> int:
        return last(shapes[0])

    def flops(self, shapes: list[Shape], out: Shape) -> int:
        return 0


class LayerScale(Elementwise):
    """Multiplies by a learned vector `gamma` along one dimension (ConvNeXt, CaiT), initialized to `value`."""

    type: Literal["layer_scale"]
    value: float = 1e-6
    """Initial value of every element of gamma."""
    dim: Literal[1, -1] = -1
    """-1: the last dimension (channels last); 1: the channels of [N, C, ...]."""

    def out_shape(self, shapes: list[Shape]) -> Shape:
        check_rank(shapes[0], 2 if self.dim == 1 else 1, "layer_scale")
        return shapes[0]

    def elements(self, shapes: list[Shape]) -> int:
        return int(shapes[0][self.dim])
