"""Property tests: random valid specs build and run; random mutations never escape as a crash."""

import copy
import tempfile

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netcfg.actions import checkpoint
from netcfg.building.builder import build_spec, sample_input
from netcfg.errors import NetcfgError
from netcfg.spec.loader import load_spec_data

ACTIVATIONS = ["relu", "gelu", "silu", "tanh", "sigmoid", "identity", "layernorm", "rmsnorm", "dropout"]


@st.composite
def layer(draw, depth=0):
    kinds = ["linear", "act", "residual", "parallel", "repeat", "block"] if depth < 2 else ["linear", "act"]
    choice = draw(st.sampled_from(kinds))
    if choice == "linear":
        return {"type": "linear", "out_features": draw(st.integers(1, 12)), "bias": draw(st.booleans())}
    if choice == "act":
        return {"type": draw(st.sampled_from(ACTIVATIONS))}
    if choice == "residual":
        # Ends at the spec's width: valid wherever the residual's input is `width` wide.
        body = [draw(layer(depth + 1)), {"type": "linear", "out_features": "${width}"}]
        return {"type": "residual", "body": {"type": "sequential", "layers": body}}
    if choice == "block":
        return {"type": "block", "block": "unit", "args": {"width": draw(st.integers(1, 12))}}
    if choice == "parallel":
        branches = draw(st.lists(layer(depth + 1), min_size=1, max_size=3))
        return {"type": "parallel", "merge": "concat", "branches": branches}
    return {"type": "repeat", "times": draw(st.integers(1, 3)), "body": draw(layer(depth + 1))}


@st.composite
def spec(draw):
    width = draw(st.integers(1, 8))
    layers = draw(st.lists(layer(), min_size=1, max_size=5))
    data = {
        "netcfg": 1,
        "vars": {"width": width},
        "seed": draw(st.integers(0, 2**31 - 1)),
        "input": {"shape": [draw(st.integers(1, 3)), width]},
        "model": {"type": "sequential", "layers": [*layers, {"type": "linear", "out_features": 3, "name": "head"}]},
    }
    data["blocks"] = {
        "unit": {"args": {"width": None}, "body": {"type": "sequential", "layers": [
            {"type": "linear", "out_features": "${width}"}, {"type": draw(st.sampled_from(ACTIVATIONS))}]}},
    }  # fmt: skip
    if draw(st.booleans()):  # two square layers whose weights are one tensor
        tied = draw(st.integers(1, 6))
        data["model"]["layers"][-1:-1] = [
            {"type": "linear", "out_features": tied},  # so tie_a's input is as wide as its output
            {"name": "tie_a", "type": "linear", "out_features": tied},
            {"name": "tie_b", "type": "linear", "out_features": tied},
        ]
        data["ties"] = [["tie_a.weight", "tie_b.weight"]] if draw(st.booleans()) else []
    data["init"] = draw(st.lists(st.sampled_from(INIT_RULES), max_size=3))
    return data


INIT_RULES = [
    {"params": "*.weight", "layers": "linear", "init": {"kind": "xavier_uniform"}},
    {"params": "*.bias", "init": {"kind": "zeros"}},
    {"params": "head.*", "init": {"kind": "normal", "std": 0.1}},
    {"layers": ["linear"], "params": "*.weight", "init": {"kind": "orthogonal"}},
    {"params": "*.weight", "init": {"kind": "mixture", "components": [
        {"p": 0.5, "init": {"kind": "zeros"}}, {"p": 0.5, "init": {"kind": "uniform", "low": -1, "high": 1}}]}},
]  # fmt: skip


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec())
def test_random_specs_validate_build_and_run_deterministically(data):
    try:
        parsed = load_spec_data(copy.deepcopy(data), "generated")
        built = build_spec(parsed, device="cpu")
    except NetcfgError as exc:
        # The only expected refusal: a residual whose body output differs from its input width.
        assert all("body output" in d.message or "cannot add" in d.message for d in exc.diagnostics), exc
        return
    x = sample_input(parsed)
    built.model.eval()
    out = built.model(x)
    assert tuple(out.shape) == built.visits[""].out_shape == (data["input"]["shape"][0], 3)
    again = build_spec(load_spec_data(copy.deepcopy(data), "generated"), device="cpu")
    again.model.eval()
    assert torch.equal(again.model(x), out)
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/model.safetensors"
        checkpoint.save(built, path)
        loaded = checkpoint.load(path, device="cpu").built.model.eval()
    assert torch.equal(loaded(x), out)
    if data.get("ties"):
        assert loaded.get_parameter("tie_a.weight") is loaded.get_parameter("tie_b.weight")


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 10**12), st.floats(allow_nan=True), st.text(max_size=8))


@st.composite
def mutated(draw):
    # A copy: spec() shares the INIT_RULES dicts between examples, and a mutation written into one
    # would change what later examples draw (hypothesis then reports a flaky strategy).
    data = copy.deepcopy(draw(spec()))
    for _ in range(draw(st.integers(1, 3))):
        node = data
        path = []
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            key = draw(st.sampled_from(list(node) if isinstance(node, dict) else list(range(len(node)))))
            path.append(key)
            parent, node = node, node[key]
        if path:
            parent[path[-1]] = draw(st.one_of(SCALARS, st.just({}), st.just([]), st.just({"type": "nope"})))
    return data


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_specs_build_or_raise_a_netcfg_error(data):
    try:
        built = build_spec(load_spec_data(data, "mutated"), device="meta")
    except NetcfgError as exc:
        assert exc.diagnostics and all(d.message for d in exc.diagnostics)
        return
    assert isinstance(built.model, torch.nn.Module)
