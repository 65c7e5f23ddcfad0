"""Standard layers: thin wrappers that turn validated args plus the inferred input
shape into the matching torch.nn module (constructed on the meta device by the builder)."""

from __future__ import annotations

import torch
from torch import nn

from netcfg import catalog as c
from netcfg.registry import builds
from netcfg.shapes import check_rank, expect_size


@builds("linear")
def linear(a: c.Linear, xs: list, ctx) -> nn.Module:
    check_rank(xs[0].shape, 1, "linear")
    n_in = expect_size(xs[0].shape, -1, a.in_features, "in_features")
    return nn.Linear(n_in, a.out_features, bias=a.bias)


def _conv(cls: type, rank: int, a: c._ConvBase, shape: tuple) -> nn.Module:
    check_rank(shape, rank + 1, cls.__name__.lower(), exact=rank + 2)
    n_in = expect_size(shape, 1, a.in_channels, "in_channels")
    return cls(
        n_in, a.out_channels, a.kernel_size, stride=a.stride, padding=a.padding,
        dilation=a.dilation, groups=a.groups, bias=a.bias,
    )  # fmt: skip


@builds("conv1d")
def conv1d(a: c.Conv1d, xs: list, ctx) -> nn.Module:
    return _conv(nn.Conv1d, 1, a, xs[0].shape)


@builds("conv2d")
def conv2d(a: c.Conv2d, xs: list, ctx) -> nn.Module:
    return _conv(nn.Conv2d, 2, a, xs[0].shape)


def _batchnorm(cls: type, a: c._BatchNormBase, shape: tuple, ranks: tuple) -> nn.Module:
    check_rank(shape, ranks[0], cls.__name__.lower(), exact=ranks)
    n = expect_size(shape, 1, a.num_features, "num_features")
    return cls(n, eps=a.eps, momentum=a.momentum, affine=a.affine, track_running_stats=a.track_running_stats)


@builds("batchnorm1d")
def batchnorm1d(a: c.BatchNorm1d, xs: list, ctx) -> nn.Module:
    return _batchnorm(nn.BatchNorm1d, a, xs[0].shape, (2, 3))


@builds("batchnorm2d")
def batchnorm2d(a: c.BatchNorm2d, xs: list, ctx) -> nn.Module:
    return _batchnorm(nn.BatchNorm2d, a, xs[0].shape, (4,))


@builds("layernorm")
def layernorm(a: c.LayerNorm, xs: list, ctx) -> nn.Module:
    check_rank(xs[0].shape, a.dims, "layernorm")
    return nn.LayerNorm(xs[0].shape[-a.dims :], eps=a.eps, elementwise_affine=a.elementwise_affine, bias=a.bias)


@builds("rmsnorm")
def rmsnorm(a: c.RMSNorm, xs: list, ctx) -> nn.Module:
    check_rank(xs[0].shape, a.dims, "rmsnorm")
    return nn.RMSNorm(xs[0].shape[-a.dims :], eps=a.eps, elementwise_affine=a.elementwise_affine)


@builds("groupnorm")
def groupnorm(a: c.GroupNorm, xs: list, ctx) -> nn.Module:
    check_rank(xs[0].shape, 2, "groupnorm")
    channels = xs[0].shape[1]
    if channels % a.groups:
        raise ValueError(f"groups={a.groups} does not divide the {channels} input channels")
    return nn.GroupNorm(a.groups, channels, eps=a.eps, affine=a.affine)


@builds("dropout")
def dropout(a: c.Dropout, xs: list, ctx) -> nn.Module:
    return nn.Dropout(a.p)


@builds("embedding")
def embedding(a: c.Embedding, xs: list, ctx) -> nn.Module:
    if xs[0].dtype.is_floating_point:
        raise ValueError(f"embedding needs integer ids; its input is {xs[0].dtype}")
    if a.padding_idx is not None and a.padding_idx >= a.num_embeddings:
        raise ValueError(f"padding_idx {a.padding_idx} is not below num_embeddings {a.num_embeddings}")
    return nn.Embedding(a.num_embeddings, a.embedding_dim, padding_idx=a.padding_idx)


class PositionalEmbedding(nn.Embedding):
    """Learned position vectors for the positions 0..T-1 of an input [N, T, ...]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1], device=self.weight.device)
        return super().forward(positions).unsqueeze(0)


@builds("pos_embedding")
def pos_embedding(a: c.PosEmbedding, xs: list, ctx) -> nn.Module:
    check_rank(xs[0].shape, 2, "pos_embedding")
    if xs[0].shape[1] > a.max_len:
        raise ValueError(f"input length {xs[0].shape[1]} exceeds max_len {a.max_len}")
    return PositionalEmbedding(a.max_len, a.dim)


_SIMPLE = {
    "relu": lambda a: nn.ReLU(),
    "gelu": lambda a: nn.GELU(approximate=a.approximate),
    "silu": lambda a: nn.SiLU(),
    "tanh": lambda a: nn.Tanh(),
    "sigmoid": lambda a: nn.Sigmoid(),
    "softmax": lambda a: nn.Softmax(dim=a.dim),
    "log_softmax": lambda a: nn.LogSoftmax(dim=a.dim),
    "leaky_relu": lambda a: nn.LeakyReLU(a.negative_slope),
    "elu": lambda a: nn.ELU(a.alpha),
    "softplus": lambda a: nn.Softplus(a.beta),
    "identity": lambda a: nn.Identity(),
    "flatten": lambda a: nn.Flatten(a.start_dim, a.end_dim),
    "maxpool1d": lambda a: nn.MaxPool1d(a.kernel_size, a.stride, a.padding),
    "maxpool2d": lambda a: nn.MaxPool2d(a.kernel_size, a.stride, a.padding),
    "avgpool1d": lambda a: nn.AvgPool1d(a.kernel_size, a.stride, a.padding),
    "avgpool2d": lambda a: nn.AvgPool2d(a.kernel_size, a.stride, a.padding),
    "adaptive_avgpool1d": lambda a: nn.AdaptiveAvgPool1d(a.output_size),
    "adaptive_avgpool2d": lambda a: nn.AdaptiveAvgPool2d(a.output_size),
    "adaptive_maxpool2d": lambda a: nn.AdaptiveMaxPool2d(a.output_size),
}


def _simple(make):
    return lambda a, xs, ctx: make(a)


for _name, _make in _SIMPLE.items():
    builds(_name)(_simple(_make))


class Reshape(nn.Module):
    """Reshapes each sample, keeping dimension 0."""

    def __init__(self, shape: list[int]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={list(self.shape)}"


@builds("reshape")
def reshape(a: c.Reshape, xs: list, ctx) -> nn.Module:
    if a.shape.count(-1) > 1:
        raise ValueError("at most one entry of shape may be -1")
    return Reshape(a.shape)
