"""Standard layers: thin wrappers that turn validated args plus the inferred input
shape into the matching torch.nn module (constructed on the meta device by the builder)."""

from __future__ import annotations

import torch
from torch import nn

from netcfg.building.devices import dtype_name
from netcfg.catalogue import nodes as c
from netcfg.catalogue.registry import builds
from netcfg.catalogue.shapes import ShapeError, check_rank, expect_size, meta_like, transposed_out, window_out


def _floating(x, layer: str) -> None:
    if not x.dtype.is_floating_point:
        dtype = dtype_name(x.dtype)
        raise ShapeError(
            f"{layer} needs a floating-point input, its input is {dtype} (token ids go through an embedding)"
        )


def _softmax(cls: type, name: str):
    def build(a, xs: list, ctx) -> nn.Module:
        rank = len(xs[0].shape)
        if not -rank <= a.dim < rank:
            raise ShapeError(f"{name} over dim {a.dim} of a {rank}-dimensional input", key="dim")
        return cls(dim=a.dim)

    return build


builds("softmax")(_softmax(nn.Softmax, "softmax"))
builds("log_softmax")(_softmax(nn.LogSoftmax, "log_softmax"))


@builds("linear")
def linear(a: c.Linear, xs: list, ctx) -> nn.Module:
    check_rank(xs[0].shape, 1, "linear")
    _floating(xs[0], "linear")
    n_in = expect_size(xs[0].shape, -1, a.in_features, "in_features")
    return nn.Linear(n_in, a.out_features, bias=a.bias), meta_like(xs[0], (*xs[0].shape[:-1], a.out_features))


def _conv_in(cls: type, rank: int, a: c._ConvArgs, x) -> int:
    """Checks a (transposed) convolution's input; its channels."""
    check_rank(x.shape, rank + 1, cls.__name__.lower(), exact=rank + 2)
    _floating(x, cls.__name__.lower())
    n_in = expect_size(x.shape, 1, a.in_channels, "in_channels")
    for name, count in (("in_channels", n_in), ("out_channels", a.out_channels)):
        if count % a.groups:
            raise ShapeError(f"groups={a.groups} does not divide {name}={count}", key="groups")
    return n_in


def _conv(cls: type, rank: int, a: c._ConvBase, x) -> tuple:
    shape = x.shape
    n_in = _conv_in(cls, rank, a, x)
    if a.padding == "same" and a.stride not in (1, [1] * rank):
        raise ShapeError("padding 'same' needs stride 1", key="padding")
    sizes = window_out(shape, rank, a.kernel_size, a.stride, a.padding, a.dilation)
    module = cls(
        n_in, a.out_channels, a.kernel_size, stride=a.stride, padding=a.padding,
        dilation=a.dilation, groups=a.groups, bias=a.bias,
    )  # fmt: skip
    return module, meta_like(x, (shape[0], a.out_channels, *sizes))


def _conv_transpose(cls: type, rank: int, a: c._ConvTransposeBase, x) -> tuple:
    shape = x.shape
    n_in = _conv_in(cls, rank, a, x)
    sizes = transposed_out(shape, rank, a.kernel_size, a.stride, a.padding, a.output_padding, a.dilation)
    module = cls(
        n_in, a.out_channels, a.kernel_size, stride=a.stride, padding=a.padding, output_padding=a.output_padding,
        groups=a.groups, bias=a.bias, dilation=a.dilation,
    )  # fmt: skip
    return module, meta_like(x, (shape[0], a.out_channels, *sizes))


_CONVS = {
    "conv1d": (_conv, nn.Conv1d, 1),
    "conv2d": (_conv, nn.Conv2d, 2),
    "conv_transpose1d": (_conv_transpose, nn.ConvTranspose1d, 1),
    "conv_transpose2d": (_conv_transpose, nn.ConvTranspose2d, 2),
}
for _name, (_make, _cls, _rank) in _CONVS.items():
    builds(_name)(lambda a, xs, ctx, make=_make, cls=_cls, rank=_rank: make(cls, rank, a, xs[0]))


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
        raise ShapeError(f"groups={a.groups} does not divide the {channels} input channels", key="groups")
    return nn.GroupNorm(a.groups, channels, eps=a.eps, affine=a.affine)


@builds("dropout")
def dropout(a: c.Dropout, xs: list, ctx) -> nn.Module:
    return nn.Dropout(a.p)


@builds("embedding")
def embedding(a: c.Embedding, xs: list, ctx) -> nn.Module:
    if xs[0].dtype.is_floating_point:
        raise ShapeError(
            f"embedding needs integer ids, its input is {str(xs[0].dtype).replace('torch.', '')} "
            "(for token inputs declare `input: {shape: [...], dtype: int64, high: VOCAB}`)"
        )
    declared = ctx.spec.head.input
    if xs[0] is ctx.root_input and (declared.low < 0 or declared.high > a.num_embeddings):
        raise ShapeError(
            f"the sample input's ids lie in [{int(declared.low)}, {int(declared.high)}), outside the "
            f"{a.num_embeddings} rows of this embedding (ids must lie in [0, num_embeddings): see input.low and high)",
            key="num_embeddings",
        )
    if a.padding_idx is not None and a.padding_idx >= a.num_embeddings:
        raise ShapeError(
            f"padding_idx {a.padding_idx} is not below num_embeddings {a.num_embeddings}", key="padding_idx"
        )
    module = nn.Embedding(a.num_embeddings, a.embedding_dim, padding_idx=a.padding_idx)
    return module, meta_like(xs[0], (*xs[0].shape, a.embedding_dim), dtype=torch.get_default_dtype())


class PositionalEmbedding(nn.Embedding):
    """Learned position vectors for the positions 0..T-1 of an input [N, T, ...]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1], device=self.weight.device)
        return super().forward(positions).unsqueeze(0)


@builds("pos_embedding")
def pos_embedding(a: c.PosEmbedding, xs: list, ctx) -> nn.Module:
    check_rank(xs[0].shape, 2, "pos_embedding")
    if xs[0].shape[1] > a.max_len:
        raise ShapeError(f"input length {xs[0].shape[1]} exceeds max_len {a.max_len}", key="max_len")
    out = meta_like(xs[0], (1, xs[0].shape[1], a.dim), dtype=torch.get_default_dtype())
    return PositionalEmbedding(a.max_len, a.dim), out


_SIMPLE = {
    "relu": lambda a: nn.ReLU(),
    "gelu": lambda a: nn.GELU(approximate=a.approximate),
    "silu": lambda a: nn.SiLU(),
    "tanh": lambda a: nn.Tanh(),
    "sigmoid": lambda a: nn.Sigmoid(),
    "leaky_relu": lambda a: nn.LeakyReLU(a.negative_slope),
    "elu": lambda a: nn.ELU(a.alpha),
    "softplus": lambda a: nn.Softplus(a.beta),
    "relu6": lambda a: nn.ReLU6(),
    "hardswish": lambda a: nn.Hardswish(),
    "hardsigmoid": lambda a: nn.Hardsigmoid(),
    "mish": lambda a: nn.Mish(),
    "identity": lambda a: nn.Identity(),
}


def _simple(make):
    return lambda a, xs, ctx: make(a)


for _name, _make in _SIMPLE.items():
    builds(_name)(_simple(_make))


@builds("hardtanh")
def hardtanh(a: c.Hardtanh, xs: list, ctx) -> nn.Module:
    if a.min_val >= a.max_val:
        raise ShapeError(f"min_val {a.min_val} must be below max_val {a.max_val}", key="min_val")
    return nn.Hardtanh(a.min_val, a.max_val)


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


_POOLS = {
    "maxpool1d": (nn.MaxPool1d, 1),
    "maxpool2d": (nn.MaxPool2d, 2),
    "avgpool1d": (nn.AvgPool1d, 1),
    "avgpool2d": (nn.AvgPool2d, 2),
}


def _pool(name: str):
    cls, rank = _POOLS[name]

    def build(a: c._PoolBase, xs: list, ctx) -> tuple:
        shape = xs[0].shape
        check_rank(shape, rank + 1, name, exact=(rank + 1, rank + 2))
        stride = a.stride if a.stride is not None else a.kernel_size
        if any(2 * p > k for p, k in zip(_pair(a.padding, rank), _pair(a.kernel_size, rank), strict=False)):
            raise ShapeError("padding must be at most half the kernel size", key="padding")
        sizes = window_out(shape, rank, a.kernel_size, stride, a.padding, ceil_mode=a.ceil_mode)
        extra = {} if name.startswith("max") else {"count_include_pad": a.count_include_pad}
        module = cls(a.kernel_size, a.stride, a.padding, ceil_mode=a.ceil_mode, **extra)
        return module, meta_like(xs[0], (*shape[:-rank], *sizes))

    return build


def _pair(value, rank: int) -> tuple:
    return (value,) * rank if isinstance(value, int) else tuple(value)


for _name in _POOLS:
    builds(_name)(_pool(_name))

_ADAPTIVE = {
    "adaptive_avgpool1d": (nn.AdaptiveAvgPool1d, 1),
    "adaptive_avgpool2d": (nn.AdaptiveAvgPool2d, 2),
    "adaptive_maxpool2d": (nn.AdaptiveMaxPool2d, 2),
}


def _adaptive(name: str):
    cls, rank = _ADAPTIVE[name]

    def build(a, xs: list, ctx) -> tuple:
        shape = xs[0].shape
        check_rank(shape, rank + 1, name, exact=(rank + 1, rank + 2))
        size = _pair(a.output_size, rank)
        if len(size) != rank:
            raise ShapeError(f"output_size needs {rank} values", key="output_size")
        return cls(a.output_size), meta_like(xs[0], (*shape[:-rank], *size))

    return build


for _name in _ADAPTIVE:
    builds(_name)(_adaptive(_name))


@builds("flatten")
def flatten(a: c.Flatten, xs: list, ctx) -> tuple:
    shape = list(xs[0].shape)
    rank = len(shape)
    if not (-rank <= a.start_dim < rank and -rank <= a.end_dim < rank) or a.start_dim % rank > a.end_dim % rank:
        raise ShapeError(f"cannot flatten dims {a.start_dim}..{a.end_dim} of a {rank}-dimensional input")
    start, end = a.start_dim % rank, a.end_dim % rank
    size = 1
    for s in shape[start : end + 1]:
        size *= s
    return nn.Flatten(a.start_dim, a.end_dim), meta_like(xs[0], shape[:start] + [size] + shape[end + 1 :])
