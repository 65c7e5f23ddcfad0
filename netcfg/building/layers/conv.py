"""Torch build functions of netcfg/catalogue/conv.py."""

from __future__ import annotations

from torch import nn

from netcfg.catalogue import conv as d
from netcfg.catalogue.registry import builds

_CONVS = {"conv1d": nn.Conv1d, "conv2d": nn.Conv2d}
_TRANSPOSED = {"conv_transpose1d": nn.ConvTranspose1d, "conv_transpose2d": nn.ConvTranspose2d}


def _conv(a: d._Conv, xs: list, ctx) -> nn.Module:
    return _CONVS[a.type](
        int(xs[0].shape[1]), a.out_channels, a.kernel_size, stride=a.stride, padding=a.padding,
        dilation=a.dilation, groups=a.groups, bias=a.bias,
    )  # fmt: skip


def _conv_transpose(a: d._ConvTranspose, xs: list, ctx) -> nn.Module:
    return _TRANSPOSED[a.type](
        int(xs[0].shape[1]), a.out_channels, a.kernel_size, stride=a.stride, padding=a.padding,
        output_padding=a.output_padding, groups=a.groups, bias=a.bias, dilation=a.dilation,
    )  # fmt: skip


for _name in _CONVS:
    builds(_name)(_conv)
for _name in _TRANSPOSED:
    builds(_name)(_conv_transpose)
