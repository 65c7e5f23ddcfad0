"""Torch build functions of netcfg/catalogue/learned.py: one learned tensor each."""

from __future__ import annotations

import torch
from torch import nn

from netcfg.catalogue import learned as d
from netcfg.catalogue.registry import builds


class ClassToken(nn.Module):
    """Prepends the learned `token` [1, 1, dim] to every sequence of [N, T, dim]."""

    def __init__(self, dim: int):
        super().__init__()
        self.token = nn.Parameter(torch.empty(1, 1, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.token)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)

    def extra_repr(self) -> str:
        return f"dim={self.token.shape[-1]}"


@builds("class_token")
def class_token(a: d.ClassToken, xs: list, ctx) -> nn.Module:
    return ClassToken(int(xs[0].shape[-1]))


class LayerScale(nn.Module):
    """x * gamma, gamma a learned vector along dimension `dim` (-1: last, 1: channels)."""

    def __init__(self, size: int, dim: int, value: float):
        super().__init__()
        self.dim, self.value = dim, value
        self.gamma = nn.Parameter(torch.empty(size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.gamma, self.value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dim == -1:
            return x * self.gamma
        return x * self.gamma.reshape(-1, *([1] * (x.dim() - 2)))

    def extra_repr(self) -> str:
        return f"size={self.gamma.shape[0]}, dim={self.dim}, value={self.value}"


@builds("layer_scale")
def layer_scale(a: d.LayerScale, xs: list, ctx) -> nn.Module:
    return LayerScale(int(xs[0].shape[a.dim]), a.dim, a.value)
