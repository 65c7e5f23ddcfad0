"""Torch build functions of netcfg/catalogue/pooling.py."""

from __future__ import annotations

from torch import nn

from netcfg.catalogue import pooling as d
from netcfg.catalogue.registry import builds

_MAX = {"maxpool1d": nn.MaxPool1d, "maxpool2d": nn.MaxPool2d}
_AVG = {"avgpool1d": nn.AvgPool1d, "avgpool2d": nn.AvgPool2d}
_ADAPTIVE = {
    "adaptive_avgpool1d": nn.AdaptiveAvgPool1d,
    "adaptive_avgpool2d": nn.AdaptiveAvgPool2d,
    "adaptive_maxpool2d": nn.AdaptiveMaxPool2d,
}


def _max(a: d._Pool, xs: list, ctx) -> nn.Module:
    return _MAX[a.type](a.kernel_size, a.stride, a.padding, ceil_mode=a.ceil_mode)


def _avg(a: d._AvgPool, xs: list, ctx) -> nn.Module:
    return _AVG[a.type](
        a.kernel_size, a.stride, a.padding, ceil_mode=a.ceil_mode, count_include_pad=a.count_include_pad
    )


def _adaptive(a, xs: list, ctx) -> nn.Module:
    return _ADAPTIVE[a.type](a.output_size)


for _table, _build in ((_MAX, _max), (_AVG, _avg), (_ADAPTIVE, _adaptive)):
    for _name in _table:
        builds(_name)(_build)


@builds("upsample")
def upsample(a: d.Upsample, xs: list, ctx) -> nn.Module:
    size = tuple(a.size) if isinstance(a.size, list) else a.size
    factor = tuple(a.scale_factor) if isinstance(a.scale_factor, list) else a.scale_factor
    return nn.Upsample(size=size, scale_factor=factor, mode=a.mode, align_corners=a.align_corners)
