"""`extra_inputs: every_layer`: a sequential (or a repeat in sequence) given several inputs passes
the inputs after the first to every layer, as a Transformer stack passes its mask (issue 12)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from netcfg.building import memplan
from netcfg.building.builder import build_spec
from netcfg.errors import BuildError, SpecError
from netcfg.spec.loader import load_spec, load_spec_data


def spec_of(model: dict, shape=(2, 6)):
    return load_spec_data({"netcfg": 1, "input": {"shape": list(shape)}, "model": model}, "generated")


def stack(**extra) -> dict:
    """x -> m = linear(x); then three copies of a block reading (h, m): h = relu(linear(h) + m)."""
    body = {
        "type": "graph",
        "input_names": ["h", "m"],
        "nodes": {
            "dense": {"type": "linear", "out_features": 6, "inputs": "h"},
            "sum": {"type": "add", "inputs": ["dense", "m"]},
            "act": {"type": "relu"},
        },
    }
    layers = {"type": "repeat", "times": 3, "inputs": ["input", "m"], "body": body, **extra}
    return {"type": "graph", "nodes": {"m": {"type": "linear", "out_features": 6}, "layers": layers}}


def test_every_copy_reads_the_extra_input_as_a_hand_written_loop_does():
    built = build_spec(spec_of(stack(extra_inputs="every_layer")), device="cpu", seed=3)
    model = built.model
    assert [name for name, _ in model.layers.named_children()] == ["0", "1", "2"]  # nn.Sequential's names
    x = torch.rand(2, 6)
    m = model.m(x)
    h = x
    for copy in model.layers:
        h = F.relu(copy.dense(h) + m)
    torch.testing.assert_close(model(x), h)
    assert isinstance(model.layers, nn.Sequential)  # indexing, len and state_dict as before


def test_by_default_only_the_first_layer_reads_every_input():
    with pytest.raises(BuildError) as err:
        build_spec(spec_of(stack()), device="meta")
    assert "layers.1" in str(err.value) and "given 1 inputs" in str(err.value)
    # a sequential whose first layer merges its two inputs works as before
    layers = [{"type": "add"}, {"type": "relu"}]
    nodes = {
        "m": {"type": "linear", "out_features": 6},
        "s": {"type": "sequential", "inputs": ["input", "m"], "layers": layers},
    }
    built = build_spec(spec_of({"type": "graph", "nodes": nodes}), device="cpu")
    x = torch.rand(2, 6)
    torch.testing.assert_close(built.model(x), F.relu(x + built.model.m(x)))


def test_the_memory_plan_keeps_the_extra_input_while_every_layer_runs():
    # x 10, m 10 (a linear); copy 0: x + m -> 10 (x, m, it: 30); copy 1 with x, m and copy 0's
    # output alive: 40, then copy 0's output goes
    nodes = {"m": {"type": "linear", "out_features": 10},
             "s": {"type": "repeat", "times": 3, "extra_inputs": "every_layer", "inputs": ["input", "m"],
                   "body": {"type": "add"}}}  # fmt: skip
    spec = spec_of({"type": "graph", "nodes": nodes}, shape=(1, 10))
    peak = memplan.plan(build_spec(spec, device="meta").visits, 4, spec.shared)
    assert (peak.bytes, peak.path, peak.type) == (4 * 40, "s.1", "add")


def test_side_by_side_and_spliced_chains_are_refused_at_their_lines(write_spec):
    text = """\
netcfg: 1
input: {shape: [2, 6]}
blocks:
  chain: {body: {type: sequential, extra_inputs: every_layer, layers: [{type: relu}]}}
model:
  type: sequential
  layers:
    - {type: repeat, times: 2, merge: add, extra_inputs: every_layer, body: {type: relu}}
    - {type: block, block: chain, splice: true}
"""
    path = write_spec(text)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert [str(d).removeprefix(f"{path}:") for d in err.value.diagnostics] == [
        "8:58: error: copies side by side (merge) all read every input: 'extra_inputs: every_layer' is for copies "
        "in sequence",
        "9:43: error: a sequential whose every layer reads its extra inputs (extra_inputs: every_layer) cannot be "
        "spliced: the enclosing list gives them to its first layer only",
    ]
