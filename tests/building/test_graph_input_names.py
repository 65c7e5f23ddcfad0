"""A nested graph given several distinct inputs calls them by the names in its own `inputs:`."""

from __future__ import annotations

import torch

from netcfg.building.builder import build_spec, sample_inputs
from netcfg.spec.loader import load_spec_data

SPEC = {
    "netcfg": 1,
    "input": {"hidden": {"shape": [2, 8]}, "mask": {"shape": [2, 8]}},
    "model": {"type": "graph", "nodes": {
        "inner": {"type": "graph", "inputs": ["hidden", "mask"], "nodes": {
            "gated": {"type": "mul", "inputs": ["hidden", "mask"]},
            "out": {"type": "linear", "out_features": 3},
        }},
    }},
}  # fmt: skip


def test_a_nested_graph_names_its_inputs_after_what_it_reads():
    built = build_spec(load_spec_data(SPEC, "spec.yaml"))
    hidden, mask = sample_inputs(built.spec)
    inner = built.model.inner
    expected = torch.nn.functional.linear(hidden * mask, inner.out.weight, inner.out.bias)
    torch.testing.assert_close(built.model(hidden, mask), expected, rtol=0, atol=1e-6)
    explicit = {**SPEC, "model": {"type": "graph", "nodes": {"inner": {
        **SPEC["model"]["nodes"]["inner"], "input_names": ["hidden", "mask"]}}}}  # fmt: skip
    again = build_spec(load_spec_data(explicit, "spec.yaml"))
    assert [tuple(p.shape) for p in again.model.parameters()] == [tuple(p.shape) for p in built.model.parameters()]
