"""Every built-in declaration against PyTorch: its output shape and dtype equal a real forward
pass, its element count equals the real parameters and buffers, and its FLOPs equal
FlopCounterMode's. The registry is walked, so a new layer type without rules, or without an
example here, fails."""

from __future__ import annotations

import functools

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from netcfg.building.builder import build_spec, sample_input
from netcfg.catalogue.base import Node
from netcfg.catalogue.registry import REGISTRY
from netcfg.spec.loader import load_spec_data

IDS = {"dtype": "int64", "high": 50}
# An example's args may hold graph nodes under this key: they make the layer's other inputs, the
# layer (named "m") reading them through its `inputs`.
FEEDS = "feeds"

# type -> list of (args, input shape, extra input fields); merges are fed by a graph (see below).
EXAMPLES: dict[str, list[tuple[dict, list[int], dict]]] = {
    "linear": [({"out_features": 5}, [2, 3, 8], {}), ({"out_features": 4, "bias": False}, [7], {})],
    "conv1d": [({"out_channels": 6, "kernel_size": 3, "stride": 2, "padding": 1, "groups": 2}, [2, 4, 11], {})],
    "conv2d": [
        ({"out_channels": 6, "kernel_size": [3, 2], "dilation": 2, "bias": False}, [2, 3, 9, 8], {}),
        ({"out_channels": 4, "kernel_size": 3, "padding": "same"}, [1, 2, 5, 5], {}),
    ],
    "conv_transpose1d": [({"out_channels": 3, "kernel_size": 4, "stride": 3}, [2, 5, 9], {})],
    "conv_transpose2d": [
        ({"out_channels": 6, "kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1}, [2, 4, 5, 7], {}),
        ({"out_channels": 6, "kernel_size": [2, 3], "groups": 2, "dilation": 2, "bias": False}, [1, 4, 6, 6], {}),
    ],
    "batchnorm1d": [({}, [4, 3, 5], {}), ({"affine": False}, [4, 3], {})],
    "batchnorm2d": [({"track_running_stats": False}, [2, 3, 4, 4], {}), ({}, [2, 3, 4, 4], {})],
    "layernorm": [
        ({"dims": 2}, [2, 3, 8], {}),
        ({"bias": False}, [2, 8], {}),
        ({"elementwise_affine": False}, [2, 8], {}),
    ],
    "layernorm2d": [
        ({}, [2, 3, 4, 5], {}),
        ({"bias": False, "eps": 1e-5}, [1, 4, 3, 3], {}),
        ({"elementwise_affine": False}, [2, 3, 2, 2], {}),
    ],
    "rmsnorm": [({}, [2, 3, 8], {}), ({"elementwise_affine": False}, [2, 8], {})],
    "groupnorm": [({"groups": 2}, [2, 4, 5], {}), ({"groups": 1, "affine": False}, [2, 4, 3, 3], {})],
    "embedding": [({"num_embeddings": 50, "embedding_dim": 6, "padding_idx": 0}, [2, 7], IDS)],
    "pos_embedding": [({"max_len": 16, "dim": 6}, [2, 7, 3], {})],
    "class_token": [({}, [2, 5, 8], {})],
    "layer_scale": [({"value": 0.5}, [2, 5, 8], {}), ({"dim": 1}, [2, 5, 3, 3], {})],
    "relu": [({}, [2, 8], {})],
    "gelu": [({"approximate": "tanh"}, [2, 8], {})],
    "silu": [({}, [2, 8], {})],
    "tanh": [({}, [2, 8], {})],
    "sigmoid": [({}, [2, 8], {})],
    "softmax": [({"dim": 1}, [2, 3, 8], {})],
    "log_softmax": [({}, [2, 8], {})],
    "leaky_relu": [({"negative_slope": 0.2}, [2, 8], {})],
    "prelu": [({}, [2, 8], {}), ({"per_channel": True, "init": 0.1}, [2, 3, 4, 4], {})],
    "elu": [({}, [2, 8], {})],
    "softplus": [({"beta": 2.0}, [2, 8], {})],
    "relu6": [({}, [2, 8], {})],
    "hardtanh": [({"min_val": -2.0, "max_val": 0.5}, [2, 8], {})],
    "hardswish": [({}, [2, 8], {})],
    "hardsigmoid": [({}, [2, 8], {})],
    "mish": [({}, [2, 8], {})],
    "dropout": [({"p": 0.3}, [2, 8], {})],
    "drop_path": [({"p": 0.3}, [2, 8], {}), ({"p": 0.0, "scale_by_keep": False}, [2, 3, 4, 4], {})],
    "maxpool1d": [({"kernel_size": 3, "stride": 2, "ceil_mode": True}, [2, 3, 10], {})],
    "maxpool2d": [
        ({"kernel_size": 3, "stride": 2, "padding": 1}, [1, 2, 8, 9], {}),
        ({"kernel_size": 2}, [2, 5, 5], {}),
    ],
    "avgpool1d": [({"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}, [2, 3, 10], {})],
    "avgpool2d": [({"kernel_size": [2, 3], "ceil_mode": True}, [1, 2, 7, 8], {})],
    "adaptive_avgpool1d": [({"output_size": 3}, [2, 4, 10], {})],
    "adaptive_avgpool2d": [({"output_size": [2, 3]}, [2, 4, 7, 9], {}), ({}, [4, 5, 5], {})],
    "adaptive_maxpool2d": [({"output_size": 2}, [2, 4, 7, 9], {})],
    "upsample": [
        ({"scale_factor": 2}, [1, 3, 5, 7], {}),
        ({"scale_factor": [1.5, 2.5], "mode": "bilinear", "align_corners": True}, [1, 3, 5, 7], {}),
        ({"size": 11, "mode": "linear"}, [2, 3, 5], {}),
    ],
    "flatten": [({}, [2, 3, 4, 5], {}), ({"start_dim": 2, "end_dim": -2}, [2, 3, 4, 5], {})],
    "reshape": [({"shape": [4, -1]}, [2, 3, 8], {}), ({"shape": [24]}, [2, 3, 8], IDS)],
    "identity": [({}, [2, 8], IDS)],
    "pixel_shuffle": [({"upscale_factor": 2}, [2, 12, 3, 5], {}), ({"upscale_factor": 3}, [9, 4, 4], {})],
    "permute": [({"dims": [0, 2, 3, 1]}, [2, 3, 4, 5], {})],
    "select": [({"index": 0}, [2, 5, 8], {}), ({"index": -1, "dim": -1}, [2, 5, 8], IDS)],
    "slice": [({"start": 1}, [2, 5, 8], {}), ({"start": -6, "stop": -1, "step": 2, "dim": 2}, [2, 5, 8], {})],
    "roll": [({"shifts": [-3, -3], "dims": [1, 2]}, [2, 7, 7, 4], {}), ({"shifts": 2, "dims": -1}, [2, 5], IDS)],
    "attention": [
        ({"heads": 4}, [2, 5, 16], {}),
        ({"heads": 4, "kv_heads": 2, "head_dim": 6, "causal": True, "rotary": True, "bias": False}, [2, 5, 16], {}),
        # padded token ids: the ids themselves are the key_padding mask (id 0: padding)
        (
            {
                "heads": 2,
                "mask": "key_padding",
                "causal": True,
                "inputs": ["emb", "input"],
                FEEDS: {"emb": {"type": "embedding", "num_embeddings": 50, "embedding_dim": 8}},
            },
            [2, 7],
            IDS,
        ),
        # cross-attention to a source of S = dim positions of width T: the input is its additive mask [N, T, S]
        # and, stacked, its score bias [N, 1, T, S]
        (
            {
                "heads": 2,
                "kv_heads": 1,
                "head_dim": 3,
                "cross": True,
                "mask": "additive",
                "score_bias": True,
                "inputs": ["input", "source", "input", "bias"],
                FEEDS: {
                    "turned": {"type": "permute", "dims": [0, 2, 1]},
                    "source": {"type": "linear", "out_features": 6},
                    "bias": {"type": "stack", "dim": 1, "inputs": ["input"]},
                },
            },
            [2, 5, 8],
            {},
        ),
        # Swin: windows [N, 4, 4, C] of an image [N, 4, 4, C] cut 2 x 2, rolled back by 1
        (
            {
                "heads": 2,
                "mask": "additive",
                "score_bias": True,
                "inputs": ["windows", "mask", "bias"],
                FEEDS: {
                    "rolled": {"type": "roll", "shifts": [-1, -1], "dims": [1, 2]},
                    "grid": {"type": "reshape", "shape": [2, 2, 2, 2, 6]},
                    "cut": {"type": "permute", "dims": [0, 1, 3, 2, 4, 5]},
                    "windows": {"type": "reshape", "shape": [4, 4, 6]},
                    "mask": {"type": "window_mask", "window": 2, "shift": 1, "inputs": "rolled"},
                    "bias": {"type": "relative_position_bias", "window": 2, "heads": 2},
                },
            },
            [2, 4, 4, 6],
            {},
        ),
    ],
    "relative_position_bias": [
        ({"window": 3, "heads": 2}, [2, 9, 8], {}),
        ({"window": [2, 3], "heads": 1}, [4, 6], IDS),
    ],
    "window_mask": [
        ({"window": 2, "shift": 1}, [2, 4, 6, 3], {}),
        ({"window": [2, 3], "shift": [0, 2], "value": -1e4}, [1, 4, 6, 2], {}),
    ],
    "lstm": [
        ({"hidden_size": 5}, [2, 7, 8], {}),
        ({"hidden_size": 5, "num_layers": 2, "bidirectional": True, "dropout": 0.1, "output": "final"}, [2, 7, 8], {}),
        ({"hidden_size": 6, "proj_size": 3, "output": "last"}, [2, 7, 8], {}),
        (
            {"hidden_size": 5, "batch_first": False, "bidirectional": True, "output": "last", "bias": False},
            [7, 2, 4],
            {},
        ),
        (
            {"hidden_size": 6, "proj_size": 2, "num_layers": 2, "bidirectional": True, "batch_first": False},
            [7, 2, 8],
            {},
        ),
    ],
    "gru": [
        ({"hidden_size": 5, "output": "final"}, [2, 7, 8], {}),
        ({"hidden_size": 4, "num_layers": 2, "bidirectional": True, "batch_first": False}, [7, 3, 6], {}),
    ],
    "rnn": [
        ({"hidden_size": 5, "nonlinearity": "relu", "output": "last"}, [2, 7, 8], {}),
        ({"hidden_size": 4, "num_layers": 2, "bidirectional": True, "bias": False, "output": "final"}, [2, 5, 6], {}),
    ],
    "centered": [({}, [2, 8], {})],
    "dense_relu": [({"units": 5}, [2, 8], {})],
    "tensor_reduction": [({"out_features": 3}, [2, 4, 6], {})],
    "fourier": [
        ({"output": "complex"}, [2, 8], {}),
        ({"output": "real_imag"}, [2, 9], IDS),
        ({"output": "abs"}, [3, 6], {}),
    ],
    "fixed_matmul": [({"out_features": 4, "bias": 1.0}, [2, 8], {})],
    "scale": [({"value": 3.0}, [2, 8], {})],
    # merges: read the input and a second node made by `_SECOND` (see _merge_spec)
    "add": [({}, [2, 1, 8], {})],
    "mul": [({}, [2, 3, 8], {})],
    "concat": [({"dim": 1}, [2, 3, 8], {})],
    "stack": [({"dim": -1}, [2, 3, 8], {})],
}
_SECOND = {"add": {"type": "slice", "start": 0, "dim": 2}, "mul": {"type": "slice", "stop": 1, "dim": 1},
           "concat": {"type": "slice", "start": 1}, "stack": {"type": "tanh"}}  # fmt: skip
LEAVES = [e for e in REGISTRY.entries.values() if e.kind in ("layer", "merge") and e.origin == "netcfg"]
CASES = [(name, *case) for name in sorted(EXAMPLES) for case in EXAMPLES[name]]


@pytest.mark.parametrize("entry", LEAVES, ids=lambda e: e.name)
def test_every_built_in_declares_its_rules_and_has_an_example(entry):
    for rule in ("out_shape", "elements", "flops", "workspace"):  # workspace: 0 from Layer unless declared
        assert vars(Node)[rule] is not getattr(entry.model, rule), f"{entry.name} lacks its {rule} rule"
    assert EXAMPLES.get(entry.name), f"{entry.name}: add an example to EXAMPLES"


def _spec(kind: str, args: dict, shape: list[int], extra: dict):
    layer = {"type": kind, **args}
    if kind in _SECOND:  # a merge reads the input and a second value
        layer = {"type": "graph", "nodes": {"b": {**_SECOND[kind], "inputs": "input"},
                                            "m": {**layer, "inputs": ["input", "b"]}}}  # fmt: skip
    elif FEEDS in args:
        layer = {"type": "graph", "nodes": {**layer.pop(FEEDS), "m": layer}}
    return load_spec_data({"netcfg": 1, "input": {"shape": shape, **extra}, "model": layer}, "generated")


@pytest.mark.parametrize(("kind", "args", "shape", "extra"), CASES)
def test_rules_equal_pytorch(kind, args, shape, extra):
    spec = _spec(kind, args, shape, extra)
    path = "m" if kind in _SECOND or FEEDS in args else ""
    built = build_spec(spec, device="cpu", seed=0)
    module = dict(built.model.named_modules())[path]
    visit = built.visits[path]
    xs = _inputs(built, spec, module)
    with torch.no_grad():
        y = module.eval()(*xs)
    assert visit.out_shape == tuple(y.shape)
    promoted = functools.reduce(torch.promote_types, [x.dtype for x in xs])
    assert (visit.node.out_dtype([_name(x.dtype) for x in xs]) or _name(promoted)) == _name(y.dtype)
    real = sum(t.numel() for t in [*module.parameters(), *module.buffers()])
    assert visit.node.elements(visit.in_shapes) == real
    assert visit.node.flops(visit.in_shapes, visit.out_shape) == _flop_counter(spec, path, visit)


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _inputs(built, spec, module) -> list[torch.Tensor]:
    """The real inputs reaching `module` in a forward pass of the sample input."""
    seen = []
    handle = module.register_forward_pre_hook(lambda _, args: seen.extend(args))
    try:
        with torch.no_grad():
            built.model.eval()(sample_input(spec, "cpu", seed=0))
    finally:
        handle.remove()
    return seen


def _flop_counter(spec, path: str, visit) -> int:
    """FlopCounterMode on a meta build (on the CPU, fused attention counts 0)."""
    meta = build_spec(spec, device="meta")
    module = dict(meta.model.named_modules())[path]
    xs = [torch.empty(s, dtype=d, device="meta") for s, d in zip(visit.in_shapes, visit.in_dtypes, strict=True)]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*xs)
    return int(counter.get_total_flops())
