"""The reference chapter's custom layers, written as ordinary modules with their own
`reset_parameters()` so the seeded initialization pass can (re)initialize them."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from netcfg.catalogue import nodes as c
from netcfg.catalogue.registry import builds
from netcfg.catalogue.shapes import ShapeError, check_rank, expect_size, fmt, meta_like


class Centered(nn.Module):
    """x - mean(x), no parameters."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean()


class DenseReLU(nn.Module):
    """relu(x @ weight + bias) with weight [in_units, units]; standard-normal init as in the chapter."""

    def __init__(self, in_units: int, units: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_units, units))
        self.bias = nn.Parameter(torch.empty(units))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight)
        nn.init.normal_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x @ self.weight + self.bias)

    def extra_repr(self) -> str:
        return f"in_units={self.weight.shape[0]}, units={self.weight.shape[1]}"


class TensorReduction(nn.Module):
    """y_k = sum_ij W_ijk x_i x_j over the last dimension."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_in, n_out))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Keeps the output variance near the input's for inputs of unit scale.
        bound = 1.0 / self.weight.shape[0]
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("...i,...j,ijk->...k", x, x, self.weight)


class Fourier(nn.Module):
    """The first n // 2 DFT coefficients along the last dimension."""

    def __init__(self, output: str):
        super().__init__()
        self.output = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coeffs = torch.fft.fft(x, dim=-1)[..., : x.shape[-1] // 2]
        if self.output == "abs":
            return coeffs.abs()
        if self.output == "real_imag":
            return torch.cat([coeffs.real, coeffs.imag], dim=-1)
        return coeffs

    def extra_repr(self) -> str:
        return f"output={self.output}"


class FixedMatmul(nn.Module):
    """x @ W + bias with W a constant buffer drawn uniformly once (never trained)."""

    def __init__(self, n_in: int, n_out: int, low: float, high: float, bias: float):
        super().__init__()
        self.low, self.high, self.bias = low, high, bias
        self.register_buffer("weight", torch.empty(n_in, n_out))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.uniform_(self.low, self.high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[0]}, out={self.weight.shape[1]}, bias={self.bias}"


class Scale(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.value

    def extra_repr(self) -> str:
        return f"value={self.value}"


@builds("centered")
def centered(a: c.Centered, xs: list, ctx) -> nn.Module:
    return Centered()


@builds("dense_relu")
def dense_relu(a: c.DenseReLU, xs: list, ctx) -> nn.Module:
    check_rank(xs[0].shape, 1, "dense_relu")
    module = DenseReLU(expect_size(xs[0].shape, -1, a.in_units, "in_units"), a.units)
    return module, meta_like(xs[0], (*xs[0].shape[:-1], a.units))


@builds("tensor_reduction")
def tensor_reduction(a: c.TensorReduction, xs: list, ctx) -> nn.Module:
    check_rank(xs[0].shape, 1, "tensor_reduction")
    n_in = int(xs[0].shape[-1])
    if n_in * n_in * a.out_features > 2**40:
        raise ValueError(f"weight [{n_in}, {n_in}, {a.out_features}] is too large")
    return TensorReduction(n_in, a.out_features), meta_like(xs[0], (*xs[0].shape[:-1], a.out_features))


@builds("fourier")
def fourier(a: c.Fourier, xs: list, ctx) -> tuple:
    # The output shape and dtype by formula: a meta FFT goes through slow Python decompositions.
    shape, dtype = xs[0].shape, xs[0].dtype
    check_rank(shape, 1, "fourier")
    half = int(shape[-1]) // 2
    if half < 1:
        raise ShapeError(f"fourier needs at least 2 values along the last dimension, got {fmt(shape)}")
    real = dtype if dtype.is_floating_point else torch.get_default_dtype()
    if a.output == "complex":
        return Fourier(a.output), meta_like(xs[0], (*shape[:-1], half), dtype=real.to_complex())
    return Fourier(a.output), meta_like(xs[0], (*shape[:-1], 2 * half if a.output == "real_imag" else half), dtype=real)


@builds("fixed_matmul")
def fixed_matmul(a: c.FixedMatmul, xs: list, ctx) -> nn.Module:
    check_rank(xs[0].shape, 1, "fixed_matmul")
    if not a.high > a.low:
        raise ValueError(f"high ({a.high}) must be greater than low ({a.low})")
    module = FixedMatmul(int(xs[0].shape[-1]), a.out_features, a.low, a.high, a.bias)
    return module, meta_like(xs[0], (*xs[0].shape[:-1], a.out_features))


@builds("scale")
def scale(a: c.Scale, xs: list, ctx) -> nn.Module:
    if not math.isfinite(a.value):
        raise ValueError("scale value must be finite")
    return Scale(a.value)
