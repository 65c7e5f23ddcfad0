"""Torch build functions of netcfg/catalogue/custom.py: the reference chapter's custom layers,
written as ordinary modules with their own `reset_parameters()` so the seeded initialization
pass can (re)initialize them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from netcfg.catalogue import custom as d
from netcfg.catalogue.registry import builds


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
        # The outer product x_i x_j, then one matrix product: the work its FLOP rule counts.
        n = x.shape[-1]
        outer = (x.unsqueeze(-1) * x.unsqueeze(-2)).reshape(*x.shape[:-1], n * n)
        return outer @ self.weight.reshape(n * n, -1)


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
def centered(a: d.Centered, xs: list, ctx) -> nn.Module:
    return Centered()


@builds("dense_relu")
def dense_relu(a: d.DenseReLU, xs: list, ctx) -> nn.Module:
    return DenseReLU(int(xs[0].shape[-1]), a.units)


@builds("tensor_reduction")
def tensor_reduction(a: d.TensorReduction, xs: list, ctx) -> nn.Module:
    return TensorReduction(int(xs[0].shape[-1]), a.out_features)


@builds("fourier")
def fourier(a: d.Fourier, xs: list, ctx) -> nn.Module:
    return Fourier(a.output)


@builds("fixed_matmul")
def fixed_matmul(a: d.FixedMatmul, xs: list, ctx) -> nn.Module:
    return FixedMatmul(int(xs[0].shape[-1]), a.out_features, a.low, a.high, a.bias)


@builds("scale")
def scale(a: d.Scale, xs: list, ctx) -> nn.Module:
    return Scale(a.value)
