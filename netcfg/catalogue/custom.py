"""The reference chapter's custom layers, as built-in types."""

from __future__ import annotations

from typing import Literal

from netcfg.catalogue.base import (
    BUILD_DTYPE,
    SMALL,
    Elementwise,
    Layer,
    Pos,
    Shape,
    is_float,
    last,
    matmul_flops,
    prod,
    widened,
)
from netcfg.catalogue.shapes import ShapeError, check_rank, expect_size, fmt

_COMPLEX = {"float16": "complex32", "float32": "complex64", "float64": "complex128"}


def _matmul_widening(shapes: list[Shape], out: Shape, itemsize: int) -> int:
    """A 16-bit matrix product on the CPU computes on float32 copies of its operands and result."""
    return 4 * (prod(shapes[0]) + prod(out)) if itemsize < 4 else 0


class Centered(Elementwise):
    """Parameter-free centering: x - mean(x) over all elements."""

    type: Literal["centered"]

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        return SMALL + (4 * prod(shapes[0]) if itemsize < 4 else 0)  # the mean (of a float32 copy if 16-bit)


class DenseReLU(Layer):
    """Dense layer with built-in ReLU and its own parameters: relu(x @ weight + bias), weight [in, units]."""

    type: Literal["dense_relu"]
    units: Pos
    """Output size."""
    in_units: Pos | None = None
    """Input size; inferred when omitted."""

    float_only = True

    def out_shape(self, shapes: list[Shape]) -> Shape:
        check_rank(shapes[0], 1, "dense_relu")
        expect_size(shapes[0], -1, self.in_units, "in_units")
        return (*shapes[0][:-1], self.units)

    def elements(self, shapes: list[Shape]) -> int:
        return last(shapes[0]) * self.units + self.units

    def flops(self, shapes: list[Shape], out: Shape) -> int:
        return matmul_flops(shapes[0], self.units)

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        # x @ weight, then + bias: one more tensor the size of the output
        return itemsize * prod(out) + _matmul_widening(shapes, out, itemsize) + SMALL


class TensorReduction(Layer):
    """y_k = sum_ij W_ijk x_i x_j over the last dimension; weight [in, in, out_features]."""

    type: Literal["tensor_reduction"]
    out_features: Pos
    """Size of y."""

    float_only = True

    def out_shape(self, shapes: list[Shape]) -> Shape:
        check_rank(shapes[0], 1, "tensor_reduction")
        n_in = last(shapes[0])
        if n_in * n_in * self.out_features > 2**40:
            raise ShapeError(f"weight [{n_in}, {n_in}, {self.out_features}] is too large", key="out_features")
        return (*shapes[0][:-1], self.out_features)

    def elements(self, shapes: list[Shape]) -> int:
        return last(shapes[0]) ** 2 * self.out_features

    def flops(self, shapes: list[Shape], out: Shape) -> int:
        # The outer product x_i x_j is elementwise (not counted); then one [in * in, out] product.
        return matmul_flops((*shapes[0], last(shapes[0])), self.out_features)

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        outer = (*shapes[0], last(shapes[0]))  # x_i x_j for every row
        return itemsize * prod(outer) + _matmul_widening([outer], out, itemsize) + SMALL


class Fourier(Layer):
    """Leading half (n // 2) of the discrete Fourier coefficients along the last dimension."""

    type: Literal["fourier"]
    output: Literal["complex", "abs", "real_imag"] = "complex"
    """complex tensor, magnitudes, or real and imaginary parts concatenated (last dim 2 * (n // 2))."""

    def out_shape(self, shapes: list[Shape]) -> Shape:
        shape = shapes[0]
        check_rank(shape, 1, "fourier")
        half = last(shape) // 2
        if half < 1:
            raise ShapeError(f"fourier needs at least 2 values along the last dimension, got {fmt(shape)}")
        return (*shape[:-1], 2 * half if self.output == "real_imag" else half)

    def out_dtype(self, dtypes: list[str]) -> str:
        real = dtypes[0] if is_float(dtypes[0]) else BUILD_DTYPE
        if self.output != "complex":
            return real
        if real not in _COMPLEX:
            raise ShapeError(f"fourier has no complex type for {real} input (use output: abs or real_imag)")
        return _COMPLEX[real]

    def elements(self, shapes: list[Shape]) -> int:
        return 0

    def flops(self, shapes: list[Shape], out: Shape) -> int:
        return 0  # FlopCounterMode counts no FFT

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        # all n complex coefficients (the output is a slice of them) and the FFT's own copy, complex
        # numbers of two floats; an integer input is first converted to float32
        return prod(shapes[0]) * (2 * 2 * widened(itemsize) + 4) + SMALL


class FixedMatmul(Layer):
    """x @ W + bias with a constant random W [in, out_features] stored as a buffer (not trained)."""

    type: Literal["fixed_matmul"]
    out_features: Pos
    """Columns of W."""
    low: float = 0.0
    """W is uniform in [low, high)."""
    high: float = 1.0
    """W is uniform in [low, high)."""
    bias: float = 0.0
    """Constant added after the product."""

    float_only = True

    def out_shape(self, shapes: list[Shape]) -> Shape:
        check_rank(shapes[0], 1, "fixed_matmul")
        if not self.high > self.low:
            raise ShapeError(f"high ({self.high}) must be greater than low ({self.low})", key="high")
        return (*shapes[0][:-1], self.out_features)

    def elements(self, shapes: list[Shape]) -> int:
        return last(shapes[0]) * self.out_features

    def flops(self, shapes: list[Shape], out: Shape) -> int:
        return matmul_flops(shapes[0], self.out_features)

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        return itemsize * prod(out) + _matmul_widening(shapes, out, itemsize) + SMALL  # x @ W, then + bias


class Scale(Elementwise):
    """Multiplies by a constant."""

    type: Literal["scale"]
    value: float
    """The constant."""

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        return SMALL  # the constant as a tensor
