"""Recurrent layers over a batch of sequences: LSTM, GRU and the Elman RNN (torch.nn.LSTM, GRU, RNN).

Each returns one tensor, picked by `output`. The parameters are PyTorch's, per layer k and
direction (suffix `_reverse` for the backward one): weight_ih_l{k} [G*H, F_k], weight_hh_l{k}
[G*H, H_out], with `bias` bias_ih_l{k} and bias_hh_l{k} [G*H], and for an LSTM with `proj_size`
weight_hr_l{k} [proj_size, H]; G is the number of gates (LSTM 4, GRU 3, RNN 1), F_0 the input's
features and F_k = D * H_out above it (D = 2 when bidirectional).

FLOPs count the matrix products of the recurrence, 2 per multiply-add: every weight matrix
(W_ih, W_hh, W_hr) meets one vector per sample, time step and direction, so the rule is
2 * N * T * (weight elements); gate nonlinearities and elementwise products count 0. This is
FlopCounterMode's count on the meta device, where PyTorch runs the layers step by step, and on a
loop of LSTMCell / GRUCell / RNNCell (tests/building/test_recurrent.py); on the CPU, FlopCounterMode
sees 0 for the fused oneDNN LSTM kernel.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from netcfg.catalogue.base import Layer, NonNeg, Pos, Prob, Shape, last
from netcfg.catalogue.shapes import ShapeError, fmt


class _Recurrent(Layer):
    hidden_size: Pos
    """H: features of the hidden state."""
    num_layers: Pos = 1
    """Recurrent layers stacked, each reading the output sequence of the one below."""
    bidirectional: bool = False
    """Also run each layer from the last step to the first (D = 2), outputs concatenated forward first."""
    dropout: Prob = 0.0
    """Dropout on the outputs of every layer but the last, in training (needs num_layers >= 2)."""
    batch_first: bool = True
    """true: input [N, T, F], output sequence [N, T, D*H]; false: time first, [T, N, F] and [T, N, D*H]."""
    bias: bool = True
    """Learn the biases b_ih and b_hh."""
    output: Literal["sequence", "last", "final"] = "sequence"
    """What the layer returns (D = 2 when bidirectional, H = hidden_size, or an LSTM's proj_size):
    'sequence': the last layer's output at every step, [N, T, D*H] ([T, N, D*H] when not batch_first);
    'last': the last step of that sequence, output[:, -1], [N, D*H]; when bidirectional, its backward
    half has read the last step only (the backward direction's first step);
    'final': the last layer's final hidden state h_n, forward then backward, [N, D*H]: each direction
    has read the whole sequence (what a classifier reads); the same as 'last' when not bidirectional."""

    gates: ClassVar[int] = 1
    float_only = True

    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def out_size(self) -> int:
        """H_out: features of each direction's output (proj_size for an LSTM with projections)."""
        return self.hidden_size

    def out_shape(self, shapes: list[Shape]) -> Shape:
        shape = shapes[0]
        if len(shape) != 3:
            order = "[N, T, F]" if self.batch_first else "[T, N, F] (batch_first: false)"
            hint = " (an unbatched sequence [T, F] is not taken: give it a batch of one)" if len(shape) == 2 else ""
            raise ShapeError(f"{self.type} expects a batch of sequences {order}, got {fmt(shape)}{hint}")
        if self.dropout and self.num_layers == 1:
            raise ShapeError("dropout acts between stacked layers: it needs num_layers of 2 or more", key="dropout")
        width = self.directions() * self.out_size()
        if self.output == "sequence":
            return (shape[0], shape[1], width)
        return (shape[0] if self.batch_first else shape[1], width)

    def _projection(self) -> int:
        """Elements of each layer and direction's projection weight_hr (an LSTM's proj_size)."""
        return 0

    def _weights(self, features: int) -> int:
        """Weight elements of all layers and directions, biases excluded."""
        rows, out = self.gates * self.hidden_size, self.out_size()
        inputs = [features] + [self.directions() * out] * (self.num_layers - 1)
        return self.directions() * sum(rows * (f + out) + self._projection() for f in inputs)

    def elements(self, shapes: list[Shape]) -> int:
        biases = 2 * self.gates * self.hidden_size if self.bias else 0
        return self._weights(last(shapes[0])) + self.num_layers * self.directions() * biases

    def flops(self, shapes: list[Shape], out: Shape) -> int:
        steps_and_samples = int(shapes[0][0]) * int(shapes[0][1])
        return 2 * steps_and_samples * self._weights(last(shapes[0]))

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        """An upper bound of what PyTorch's CPU kernels hold at once: per layer and direction, the
        input projections of every step (G * H each) twice (oneDNN's copy in its own layout),
        the layer's whole output sequence twice (the next layer reads it while its own is
        written), the hidden and cell states of every step, and a reordered copy of the weights;
        and three copies of the input (time-major, oneDNN's layout, its reorder)."""
        samples_steps = int(shapes[0][0]) * int(shapes[0][1])
        inputs = 3 * samples_steps * last(shapes[0])
        per_step = self.directions() * (2 * self.gates * self.hidden_size + 2 * self.out_size() + 2 * self.hidden_size)
        states = self.directions() * 2 * (self.hidden_size + self.out_size())
        elements = inputs + self.num_layers * (samples_steps * per_step + int(shapes[0][0]) * states)
        return (elements + 2 * self.elements(shapes)) * max(itemsize, 4)


class LSTM(_Recurrent):
    """Long short-term memory over [N, T, F] (torch.nn.LSTM): gates i, f, g, o; returns one tensor (`output`)."""

    type: Literal["lstm"]
    proj_size: NonNeg = 0
    """If above 0 (below hidden_size), each hidden state is projected to proj_size features (weight_hr)."""

    gates = 4

    def out_size(self) -> int:
        return self.proj_size or self.hidden_size

    def _projection(self) -> int:
        return self.proj_size * self.hidden_size

    def out_shape(self, shapes: list[Shape]) -> Shape:
        if self.proj_size >= self.hidden_size:
            raise ShapeError(
                f"proj_size {self.proj_size} must be smaller than hidden_size {self.hidden_size}", key="proj_size"
            )
        return super().out_shape(shapes)


class GRU(_Recurrent):
    """Gated recurrent unit over [N, T, F] (torch.nn.GRU): gates r, z, n; returns one tensor (`output`)."""

    type: Literal["gru"]

    gates = 3


class RNN(_Recurrent):
    """Elman recurrent layer h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) over [N, T, F] (torch.nn.RNN)."""

    type: Literal["rnn"]
    nonlinearity: Literal["tanh", "relu"] = "tanh"
    """The activation act."""
