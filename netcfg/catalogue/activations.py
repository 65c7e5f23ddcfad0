"""Activations and dropout: element by element, no parameters."""

from __future__ import annotations

from typing import Literal

from netcfg.catalogue.base import Dim, Elementwise, Prob, Shape, channels
from netcfg.catalogue.shapes import ShapeError, check_rank


class ReLU(Elementwise):
    """max(0, x)."""

    type: Literal["relu"]


class GELU(Elementwise):
    """Gaussian error linear unit (torch.nn.GELU)."""

    type: Literal["gelu"]
    approximate: Literal["none", "tanh"] = "none"
    """'tanh' uses the tanh approximation (as GPT-2)."""


class SiLU(Elementwise):
    """x * sigmoid(x), also called swish."""

    type: Literal["silu"]


class Tanh(Elementwise):
    """Hyperbolic tangent."""

    type: Literal["tanh"]


class Sigmoid(Elementwise):
    """Logistic sigmoid."""

    type: Literal["sigmoid"]


class _AlongDim(Elementwise):
    def out_shape(self, shapes: list[Shape]) -> Shape:
        rank = len(shapes[0])
        if not -rank <= self.dim < rank:
            raise ShapeError(f"{self.type} over dim {self.dim} of a {rank}-dimensional input", key="dim")
        return shapes[0]


class Softmax(_AlongDim):
    """Softmax along `dim`."""

    type: Literal["softmax"]
    dim: Dim = -1
    """Dimension that sums to one."""


class LogSoftmax(_AlongDim):
    """Log of the softmax along `dim`."""

    type: Literal["log_softmax"]
    dim: Dim = -1
    """Dimension of the softmax."""


class LeakyReLU(Elementwise):
    """max(0, x) + negative_slope * min(0, x)."""

    type: Literal["leaky_relu"]
    negative_slope: float = 0.01
    """Slope for negative inputs."""


class PReLU(Elementwise):
    """max(0, x) + a * min(0, x) with a learned slope `a` (torch.nn.PReLU), one per channel or one in all."""

    type: Literal["prelu"]
    per_channel: bool = False
    """One slope per channel (dimension 1) instead of one shared slope."""
    init: float = 0.25
    """Initial value of the slopes."""

    def out_shape(self, shapes: list[Shape]) -> Shape:
        if self.per_channel:
            check_rank(shapes[0], 2, "prelu")
        return shapes[0]

    def elements(self, shapes: list[Shape]) -> int:
        return channels(shapes[0]) if self.per_channel else 1


class ELU(Elementwise):
    """Exponential linear unit."""

    type: Literal["elu"]
    alpha: float = 1.0
    """Saturation value for negative inputs."""


class Softplus(Elementwise):
    """log(1 + exp(beta x)) / beta."""

    type: Literal["softplus"]
    beta: float = 1.0
    """Sharpness."""


class ReLU6(Elementwise):
    """min(max(0, x), 6) (MobileNet)."""

    type: Literal["relu6"]


class Hardtanh(Elementwise):
    """x clamped to [min_val, max_val]."""

    type: Literal["hardtanh"]
    min_val: float = -1.0
    """Lower bound."""
    max_val: float = 1.0
    """Upper bound."""

    def out_shape(self, shapes: list[Shape]) -> Shape:
        if self.min_val >= self.max_val:
            raise ShapeError(f"min_val {self.min_val} must be below max_val {self.max_val}", key="min_val")
        return shapes[0]


class Hardswish(Elementwise):
    """x * relu6(x + 3) / 6 (MobileNetV3)."""

    type: Literal["hardswish"]


class Hardsigmoid(Elementwise):
    """relu6(x + 3) / 6 (MobileNetV3's squeeze-excitation gate)."""

    type: Literal["hardsigmoid"]


class Mish(Elementwise):
    """x * tanh(softplus(x))."""

    type: Literal["mish"]


class Dropout(Elementwise):
    """Zeroes elements with probability p during training (torch.nn.Dropout)."""

    type: Literal["dropout"]
    p: Prob = 0.5
    """Probability of an element to be zeroed."""

    aliases = True  # in eval mode it returns its input


class DropPath(Elementwise):
    """Stochastic depth: in training, drops each sample's whole input with probability p (timm's DropPath).

    Put it last in a residual branch: a dropped sample's branch adds nothing, a kept one is scaled
    by 1 / (1 - p) (scale_by_keep); in eval it is the identity (torchvision's StochasticDepth, mode
    'row'). To let the rate grow linearly with depth, compute it from the copy number inside a
    repeat: `p: ${0.1 * index / max(depth - 1, 1)}` (configs/stochastic_depth.yaml)."""

    type: Literal["drop_path"]
    p: Prob
    """Probability of dropping a sample in training; rising with depth: ${0.1 * index / max(depth - 1, 1)}"""
    scale_by_keep: bool = True
    """Divide the kept samples by 1 - p, so the expected output is the input."""

    aliases = True  # in eval mode it returns its input
