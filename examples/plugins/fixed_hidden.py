"""A netcfg plugin: the reference chapter's FixedHiddenMLP, whose forward pass runs a
while-loop, something a spec cannot express (specs are data, never code).

Load it by naming it on the command line; nothing in a spec can load it:

    netcfg run configs/plugins/fixed_hidden_mlp.yaml --plugin examples/plugins/fixed_hidden.py

A plugin registers a layer type with an args model (a subclass of netcfg.Node with a
`type: Literal[...]` tag) and a build function called on the meta device with the
meta input tensors. It returns the module, or (module, meta_output) when the forward
pass depends on values and so cannot run on the meta device.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

import netcfg


class FixedHiddenArgs(netcfg.Node):
    """linear -> relu(x @ constant + 1) -> the same linear -> halve until |x|_1 <= limit -> sum."""

    type: Literal["fixed_hidden_mlp"]
    units: int = Field(20, ge=1)
    """Width of the linear layer and of the constant matrix."""
    limit: float = Field(1.0, gt=0)
    """The loop halves the activations until their L1 norm is at most this."""

    def workspace(self, shapes: list[tuple], out: tuple, itemsize: int) -> int:
        # For the memory plan of a forward pass (optional): x @ W, + 1 and relu(...) of [..., units]
        # alive together, then the loop's |x| and x / 2; a layer without this rule is assumed to
        # need twice its input and output.
        rows = 1
        for size in shapes[0][:-1]:
            rows *= int(size)
        return 4 * itemsize * rows * self.units


class FixedHiddenMLP(nn.Module):
    def __init__(self, n_in: int, units: int, limit: float):
        super().__init__()
        self.limit = limit
        self.linear = nn.Linear(n_in, units)
        self.register_buffer("rand_weight", torch.empty(units, units))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Own tensor: the constant matrix (the linear layer resets itself).
        with torch.no_grad():
            self.rand_weight.uniform_(0.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        x = F.relu(x @ self.rand_weight + 1)
        x = self.linear(x)  # the same layer again: shared parameters
        while x.abs().sum() > self.limit:
            x = x / 2
        return x.sum()


@netcfg.register_layer("fixed_hidden_mlp", args=FixedHiddenArgs)
def build_fixed_hidden(args: FixedHiddenArgs, xs: list, ctx) -> tuple[nn.Module, torch.Tensor]:
    n_in = int(xs[0].shape[-1])
    if n_in != args.units:
        raise ValueError(
            f"the shared linear layer maps {n_in} -> {args.units}, so it needs an input of width {args.units}"
        )
    # The loop's condition needs values; the output is a scalar whatever the input.
    return FixedHiddenMLP(n_in, args.units, args.limit), torch.empty((), device="meta")
