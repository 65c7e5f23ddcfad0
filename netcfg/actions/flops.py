"""Floating-point operations of each layer for the sample input.

Counted with the conventions of torch.utils.flop_counter (a multiply-add is 2 FLOPs;
matrix products, convolutions and attention are counted, elementwise work is not), but
computed from the shapes the builder recorded, because running FlopCounterMode costs
seconds on first use (it imports torch._dynamo). The test suite checks every formula
against FlopCounterMode on the meta device. Layers without a formula (plugins, einsum
layers) are counted by running them alone under FlopCounterMode on the meta device,
once per distinct (module, input shape).
"""

from __future__ import annotations

from math import prod

import torch
from torch import nn

from netcfg.catalogue import nodes as catalog

# Types whose work FlopCounterMode does not count (no matrix product, convolution or attention).
ZERO = catalog.ELEMENTWISE | {
    "embedding", "pos_embedding", "maxpool1d", "maxpool2d", "avgpool1d", "avgpool2d", "adaptive_avgpool1d",
    "adaptive_avgpool2d", "adaptive_maxpool2d", "flatten", "reshape", "add", "mul", "concat", "stack", "fourier",
    "permute", "select", "slice", "upsample", "class_token",
}  # fmt: skip


def rows(shape: tuple) -> int:
    """Number of vectors a layer acting on the last dimension sees."""
    return prod(shape[:-1])


def linear(in_shape: tuple, out_features: int) -> int:
    return 2 * rows(in_shape) * int(in_shape[-1]) * out_features


def conv(module: nn.Module, in_shape: tuple, out_shape: tuple) -> int:
    # 2 * N * C_out * (C_in / groups) * prod(kernel) * prod(output spatial)
    return 2 * int(in_shape[0]) * prod(module.weight.shape) * prod(out_shape[2:])


def attention(module: nn.Module, in_shape: tuple) -> int:
    n, t, dim = (int(s) for s in in_shape)
    h, kv, hd = module.heads, module.kv_heads, module.head_dim
    projections = linear(in_shape, (h + 2 * kv) * hd) + linear((n, t, h * hd), dim)
    scores_and_mix = 2 * (2 * n * h * t * t * hd)  # q @ k^T and weights @ v
    return projections + scores_and_mix


def formula(kind: str, module: nn.Module, in_shapes: list[tuple], out_shape: tuple) -> int | None:
    """FLOPs of one built-in layer, or None when there is no formula."""
    if kind in ZERO:
        return 0
    if kind == "linear":
        return linear(in_shapes[0], module.out_features)
    if kind in ("conv1d", "conv2d"):
        return conv(module, in_shapes[0], out_shape)
    if kind == "attention":
        return attention(module, in_shapes[0])
    if kind in ("dense_relu", "fixed_matmul"):
        return linear(in_shapes[0], int(module.weight.shape[1]))
    return None


def counted(module: nn.Module, in_shapes: list[tuple], dtypes: list[torch.dtype]) -> int | None:
    """FLOPs of `module` measured by FlopCounterMode on meta inputs; None when its forward
    needs values (a plugin whose loop reads `.item()`: its work depends on the data)."""
    from torch.utils.flop_counter import FlopCounterMode

    xs = [torch.empty(s, dtype=d, device="meta") for s, d in zip(in_shapes, dtypes, strict=True)]
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(*xs)
    except (RuntimeError, NotImplementedError, TypeError, ValueError, IndexError):
        return None
    return int(counter.get_total_flops())
