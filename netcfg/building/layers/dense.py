"""Torch build functions of netcfg/catalogue/dense.py."""

from __future__ import annotations

from torch import nn

from netcfg.catalogue import dense as d
from netcfg.catalogue.registry import builds


@builds("linear")
def linear(a: d.Linear, xs: list, ctx) -> nn.Module:
    return nn.Linear(int(xs[0].shape[-1]), a.out_features, bias=a.bias)
