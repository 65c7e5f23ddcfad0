"""Convolutions and transposed convolutions over [N, C, L] or [N, C, H, W]."""

from __future__ import annotations

from typing import ClassVar, Literal

from netcfg.catalogue.base import IntOrPair, Layer, NonNeg, Pos, Shape, channels, pair, prod, widened
from netcfg.catalogue.shapes import ShapeError, check_rank, expect_size, transposed_out, window_out


class _ConvArgs(Layer):
    out_channels: Pos
    """Number of output channels."""
    kernel_size: IntOrPair
    """Size of the convolving kernel."""
    stride: IntOrPair = 1
    """Stride of the convolution."""
    dilation: IntOrPair = 1
    """Spacing between kernel elements."""
    groups: Pos = 1
    """Number of blocked connections from input to output channels."""
    bias: bool = True
    """Learn an additive bias."""
    in_channels: Pos | None = None
    """Input channels (dimension 1); inferred when omitted, checked when given."""

    rank: ClassVar[int] = 2
    float_only = True

    def _check_channels(self, shape: Shape) -> int:
        check_rank(shape, self.rank + 1, self.type, exact=self.rank + 2)
        n_in = expect_size(shape, 1, self.in_channels, "in_channels")
        for name, count in (("in_channels", n_in), ("out_channels", self.out_channels)):
            if count % self.groups:
                raise ShapeError(f"groups={self.groups} does not divide {name}={count}", key="groups")
        return n_in

    def _kernel(self) -> int:
        return prod(pair(self.kernel_size, self.rank))

    def elements(self, shapes: list[Shape]) -> int:
        weight = channels(shapes[0]) * self.out_channels // self.groups * self._kernel()
        return weight + (self.out_channels if self.bias else 0)

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        """oneDNN's copies of the input, output and weights in its blocked layout (channels padded
        to 16) plus the unfolded input (im2col) of PyTorch's own kernel, which small, float64 and
        16-bit convolutions use; 16-bit values are computed as float32."""
        shape = shapes[0]
        n, c_in, c_out, k = int(shape[0]), channels(shape), self.out_channels, self._kernel()
        per_group_in, per_group_out = c_in // self.groups, c_out // self.groups
        if per_group_in == per_group_out == 1:  # depthwise: the groups are the blocked dimension
            weights = _padded(self.groups) * k
        else:
            weights = self.groups * _padded(per_group_out) * _padded(per_group_in) * k
        blocked = n * (_padded(c_in) * prod(shape[2:]) + _padded(c_out) * prod(out[2:])) + weights
        return widened(itemsize) * (blocked + self._columns(shape, out))

    def _columns(self, shape: Shape, out: Shape) -> int:
        """Elements of the unfolded input: each output position's receptive field."""
        return int(shape[0]) * channels(shape) * self._kernel() * prod(out[2:])


def _padded(count: int) -> int:
    return -(-count // 16) * 16


class _Conv(_ConvArgs):
    padding: NonNeg | list[NonNeg] | Literal["same", "valid"] = 0
    """Zero padding on each side, or 'same' / 'valid'."""

    def out_shape(self, shapes: list[Shape]) -> Shape:
        shape = shapes[0]
        self._check_channels(shape)
        if self.padding == "same" and self.stride not in (1, [1] * self.rank):
            raise ShapeError("padding 'same' needs stride 1", key="padding")
        sizes = window_out(shape, self.rank, self.kernel_size, self.stride, self.padding, self.dilation)
        return (shape[0], self.out_channels, *sizes)

    def flops(self, shapes: list[Shape], out: Shape) -> int:
        # 2 * N * C_out * (C_in / groups) * prod(kernel) * prod(output spatial)
        weight = self.out_channels * (channels(shapes[0]) // self.groups) * self._kernel()
        return 2 * int(shapes[0][0]) * weight * prod(out[2:])


class Conv1d(_Conv):
    """1-D convolution over input [N, C, L] (torch.nn.Conv1d)."""

    type: Literal["conv1d"]
    rank = 1


class Conv2d(_Conv):
    """2-D convolution over input [N, C, H, W] (torch.nn.Conv2d)."""

    type: Literal["conv2d"]


class _ConvTranspose(_ConvArgs):
    padding: NonNeg | list[NonNeg] = 0
    """dilation * (kernel_size - 1) - padding zeros are added to each side of the input."""
    output_padding: NonNeg | list[NonNeg] = 0
    """Extra size added to one side of each output dimension (below stride or dilation)."""

    def out_shape(self, shapes: list[Shape]) -> Shape:
        shape = shapes[0]
        self._check_channels(shape)
        sizes = transposed_out(
            shape, self.rank, self.kernel_size, self.stride, self.padding, self.output_padding, self.dilation
        )
        return (shape[0], self.out_channels, *sizes)

    def flops(self, shapes: list[Shape], out: Shape) -> int:
        # Each input position scatters through the whole kernel: the input's spatial size counts.
        shape = shapes[0]
        weight = channels(shape) * (self.out_channels // self.groups) * self._kernel()
        return 2 * int(shape[0]) * weight * prod(shape[2:])

    def _columns(self, shape: Shape, out: Shape) -> int:
        # each input position scatters a whole kernel of every output channel before they are summed
        return int(shape[0]) * self.out_channels * self._kernel() * prod(shape[2:])


class ConvTranspose1d(_ConvTranspose):
    """1-D transposed convolution over [N, C, L] (torch.nn.ConvTranspose1d), as in a decoder."""

    type: Literal["conv_transpose1d"]
    rank = 1


class ConvTranspose2d(_ConvTranspose):
    """2-D transposed convolution over [N, C, H, W] (torch.nn.ConvTranspose2d), as in a U-Net decoder."""

    type: Literal["conv_transpose2d"]
