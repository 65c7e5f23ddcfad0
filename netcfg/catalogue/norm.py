"""Normalization layers: output shaped as the input, a scale and shift per feature."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from netcfg.catalogue.base import SMALL, Elementwise, Pos, Shape, channels, prod, widened
from netcfg.catalogue.shapes import ShapeError, check_rank, expect_size


class _BatchNorm(Elementwise):
    eps: float = Field(1e-5, gt=0)
    """Added to the variance for numerical stability."""
    momentum: float = Field(0.1, ge=0, le=1)
    """Running statistics momentum."""
    affine: bool = True
    """Learn a per-channel scale and shift."""
    track_running_stats: bool = True
    """Keep running mean and variance buffers."""
    num_features: Pos | None = None
    """Channels (dimension 1); inferred when omitted."""

    ranks: ClassVar[tuple[int, ...]] = (4,)

    def out_shape(self, shapes: list[Shape]) -> Shape:
        check_rank(shapes[0], self.ranks[0], self.type, exact=self.ranks)
        expect_size(shapes[0], 1, self.num_features, "num_features")
        return shapes[0]

    def elements(self, shapes: list[Shape]) -> int:
        c = channels(shapes[0])
        # weight and bias; running mean and variance plus the num_batches_tracked counter
        return (2 * c if self.affine else 0) + (2 * c + 1 if self.track_running_stats else 0)

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        return 8 * 8 * channels(shapes[0]) + SMALL  # per-channel statistics, scale and shift (in double)


class BatchNorm1d(_BatchNorm):
    """Batch normalization over [N, C] or [N, C, L] (torch.nn.BatchNorm1d)."""

    type: Literal["batchnorm1d"]
    ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalization over [N, C, H, W] (torch.nn.BatchNorm2d)."""

    type: Literal["batchnorm2d"]


class _TrailingNorm(Elementwise):
    dims: Annotated[int, Field(ge=1, le=8)] = 1
    """How many trailing dimensions to normalize over."""
    elementwise_affine: bool = True
    """Learn a scale (weight)."""

    def out_shape(self, shapes: list[Shape]) -> Shape:
        check_rank(shapes[0], self.dims, self.type)
        return shapes[0]

    def _per_element(self) -> int:
        return 1 if self.elementwise_affine else 0

    def elements(self, shapes: list[Shape]) -> int:
        return self._per_element() * prod(shapes[0][-self.dims :])

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        return 2 * 8 * prod(shapes[0][: -self.dims]) + SMALL  # a mean and a reciprocal deviation per row


class LayerNorm(_TrailingNorm):
    """Layer normalization over the trailing `dims` dimensions (torch.nn.LayerNorm)."""

    type: Literal["layernorm"]
    eps: float = Field(1e-5, gt=0)
    """Added to the variance for numerical stability."""
    bias: bool = True
    """Learn a shift (bias) too."""

    def _per_element(self) -> int:
        return (1 + self.bias) if self.elementwise_affine else 0


class LayerNorm2d(Elementwise):
    """Layer normalization over the channels of [N, C, H, W], at each position (ConvNeXt's LayerNorm2d).

    Its parameters `weight` and `bias` [C] have the names of torchvision's
    torchvision.models.convnext.LayerNorm2d, so a ConvNeXt state_dict loads into it."""

    type: Literal["layernorm2d"]
    eps: float = Field(1e-6, gt=0)
    """Added to the variance for numerical stability; 1e-6 as in ConvNeXt (layernorm's default is 1e-5)."""
    elementwise_affine: bool = True
    """Learn a per-channel scale (weight)."""
    bias: bool = True
    """Learn a per-channel shift (bias) too."""

    def out_shape(self, shapes: list[Shape]) -> Shape:
        check_rank(shapes[0], 4, "layernorm2d", exact=4)
        return shapes[0]

    def elements(self, shapes: list[Shape]) -> int:
        return (1 + self.bias) * channels(shapes[0]) if self.elementwise_affine else 0

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        # the channels-last copy layer_norm needs, its output, the copy back; a mean and a deviation per position
        shape = shapes[0]
        return 3 * widened(itemsize) * prod(shape) + 2 * 8 * prod(shape) // max(channels(shape), 1) + SMALL


class RMSNorm(_TrailingNorm):
    """Root-mean-square normalization over the trailing `dims` dimensions (torch.nn.RMSNorm)."""

    type: Literal["rmsnorm"]
    eps: Annotated[float, Field(gt=0)] | None = None
    """Added inside the root; default: the dtype's machine epsilon."""

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        # x ** 2 and x * rsqrt(...) are whole tensors (float32 ones for a 16-bit input)
        return 3 * widened(itemsize) * prod(shapes[0]) + super().workspace(shapes, out, itemsize)


class GroupNorm(Elementwise):
    """Group normalization over channels (dimension 1) split into groups (torch.nn.GroupNorm)."""

    type: Literal["groupnorm"]
    groups: Pos
    """Number of groups; must divide the channel count."""
    eps: float = Field(1e-5, gt=0)
    """Added to the variance for numerical stability."""
    affine: bool = True
    """Learn a per-channel scale and shift."""

    def out_shape(self, shapes: list[Shape]) -> Shape:
        check_rank(shapes[0], 2, "groupnorm")
        if shapes[0][1] % self.groups:
            raise ShapeError(f"groups={self.groups} does not divide the {shapes[0][1]} input channels", key="groups")
        return shapes[0]

    def elements(self, shapes: list[Shape]) -> int:
        return 2 * channels(shapes[0]) if self.affine else 0

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        return 4 * 8 * int(shapes[0][0]) * self.groups + SMALL  # statistics per sample and group
