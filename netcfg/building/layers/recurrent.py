"""Torch build functions of netcfg/catalogue/recurrent.py.

Each module is a subclass of nn.LSTM / nn.GRU / nn.RNN whose forward returns the one tensor the
layer's `output` picks: its parameters, their initialization (reset_parameters) and its
state_dict keys (weight_ih_l0, weight_hh_l0_reverse, ...) are PyTorch's own, so the state_dict
of a plain torch module of the same sizes loads into it.
"""

from __future__ import annotations

import torch
from torch import nn

from netcfg.catalogue import recurrent as d
from netcfg.catalogue.registry import builds


def _pick(module: nn.RNNBase, output: torch.Tensor, h_n: torch.Tensor) -> torch.Tensor:
    if module.output == "sequence":
        return output
    if module.output == "last":
        return output[:, -1] if module.batch_first else output[-1]
    directions = 2 if module.bidirectional else 1
    final = h_n[-directions:]  # the last layer's directions: [D, N, H_out]
    return final.transpose(0, 1).reshape(final.shape[1], -1)


class _OneOutput:
    """Mixed into nn.LSTM / nn.GRU / nn.RNN: the forward returns the one tensor `output` picks."""

    def __init__(self, *args, output: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.output = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, h_n = super().forward(x)
        if isinstance(h_n, tuple):  # an LSTM's (h_n, c_n)
            h_n = h_n[0]
        return _pick(self, y, h_n)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, output={self.output}"


class LSTM(_OneOutput, nn.LSTM):
    """nn.LSTM returning one tensor: `output` (sequence, last or final)."""


class GRU(_OneOutput, nn.GRU):
    """nn.GRU returning one tensor: `output` (sequence, last or final)."""


class RNN(_OneOutput, nn.RNN):
    """nn.RNN returning one tensor: `output` (sequence, last or final)."""


def _common(a: d._Recurrent, xs: list) -> dict:
    return {
        "input_size": int(xs[0].shape[-1]), "hidden_size": a.hidden_size, "num_layers": a.num_layers,
        "bias": a.bias, "batch_first": a.batch_first, "dropout": a.dropout, "bidirectional": a.bidirectional,
        "output": a.output,
    }  # fmt: skip


@builds("lstm")
def lstm(a: d.LSTM, xs: list, ctx) -> nn.Module:
    return LSTM(**_common(a, xs), proj_size=a.proj_size)


@builds("gru")
def gru(a: d.GRU, xs: list, ctx) -> nn.Module:
    return GRU(**_common(a, xs))


@builds("rnn")
def rnn(a: d.RNN, xs: list, ctx) -> nn.Module:
    return RNN(**_common(a, xs), nonlinearity=a.nonlinearity)
