"""Dense layers: a matrix product over the last dimension."""

from __future__ import annotations

from typing import Literal

from netcfg.catalogue.base import Layer, Pos, Shape, last, matmul_flops, prod
from netcfg.catalogue.shapes import check_rank, expect_size


class Linear(Layer):
    """Fully connected layer y = x W^T + b (torch.nn.Linear) over the last dimension."""

    type: Literal["linear"]
    out_features: Pos
    """Size of each output sample."""
    bias: bool = True
    """Learn an additive bias."""
    in_features: Pos | None = None
    """Size of each input sample; inferred when omitted, checked when given."""

    float_only = True

    def out_shape(self, shapes: list[Shape]) -> Shape:
        check_rank(shapes[0], 1, "linear")
        expect_size(shapes[0], -1, self.in_features, "in_features")
        return (*shapes[0][:-1], self.out_features)

    def elements(self, shapes: list[Shape]) -> int:
        return last(shapes[0]) * self.out_features + (self.out_features if self.bias else 0)

    def flops(self, shapes: list[Shape], out: Shape) -> int:
        return matmul_flops(shapes[0], self.out_features)

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        # the bias is added inside the product; a 16-bit product on the CPU works on float32 copies
        return 4 * (prod(shapes[0]) + prod(out)) if itemsize < 4 else 0
