"""Torch build functions of netcfg/catalogue/norm.py."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from netcfg.catalogue import norm as d
from netcfg.catalogue.registry import builds

_BATCHNORMS = {"batchnorm1d": nn.BatchNorm1d, "batchnorm2d": nn.BatchNorm2d}


def _batchnorm(a: d._BatchNorm, xs: list, ctx) -> nn.Module:
    return _BATCHNORMS[a.type](
        int(xs[0].shape[1]), eps=a.eps, momentum=a.momentum, affine=a.affine,
        track_running_stats=a.track_running_stats,
    )  # fmt: skip


for _name in _BATCHNORMS:
    builds(_name)(_batchnorm)


@builds("layernorm")
def layernorm(a: d.LayerNorm, xs: list, ctx) -> nn.Module:
    return nn.LayerNorm(xs[0].shape[-a.dims :], eps=a.eps, elementwise_affine=a.elementwise_affine, bias=a.bias)


class LayerNorm2d(nn.LayerNorm):
    """nn.LayerNorm over dimension 1 of [N, C, H, W], as torchvision's ConvNeXt LayerNorm2d (same state_dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


@builds("layernorm2d")
def layernorm2d(a: d.LayerNorm2d, xs: list, ctx) -> nn.Module:
    return LayerNorm2d(int(xs[0].shape[1]), eps=a.eps, elementwise_affine=a.elementwise_affine, bias=a.bias)


@builds("rmsnorm")
def rmsnorm(a: d.RMSNorm, xs: list, ctx) -> nn.Module:
    return nn.RMSNorm(xs[0].shape[-a.dims :], eps=a.eps, elementwise_affine=a.elementwise_affine)


@builds("groupnorm")
def groupnorm(a: d.GroupNorm, xs: list, ctx) -> nn.Module:
    return nn.GroupNorm(a.groups, int(xs[0].shape[1]), eps=a.eps, affine=a.affine)
