"""inspect's numbers against references: closed-form formulas and FlopCounterMode."""

import json

import jsonschema
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from netcfg.actions.inspection import Report, inspect_spec
from netcfg.building.builder import build_spec
from netcfg.catalogue.registry import REGISTRY
from netcfg.spec.loader import load_spec, load_spec_data


def spec_of(model: dict, shape: list[int], **extra) -> object:
    return load_spec_data({"netcfg": 1, "input": {"shape": shape, **extra}, "model": model}, "generated")


def counted_by_torch(model: dict, shape: list[int]) -> int:
    """Reference: FlopCounterMode over a forward pass of the built model on the meta device.

    (Not on the CPU: there PyTorch's fused CPU attention kernel has no FLOP formula and
    FlopCounterMode counts the attention itself as 0; on meta it runs as matmuls.)
    """
    spec = spec_of(model, shape)
    built = build_spec(spec, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        built.model(torch.empty(shape, device="meta"))
    return counter.get_total_flops()


def test_linear_flops_closed_form():
    report = inspect_spec(spec_of({"type": "linear", "out_features": 7}, [3, 5, 11]))
    assert report.flops == 2 * (3 * 5) * 11 * 7
    assert report.macs == (3 * 5) * 11 * 7


def test_attention_flops_closed_form():
    b, t, d, h, kv = 2, 16, 64, 8, 2
    hd = d // h
    model = {"type": "attention", "heads": h, "kv_heads": kv, "causal": True, "rotary": True}
    report = inspect_spec(spec_of(model, [b, t, d]))
    projections = 2 * b * t * d * (h + 2 * kv) * hd + 2 * b * t * (h * hd) * d
    attention = 2 * b * h * t * t * hd + 2 * b * h * t * t * hd
    assert report.flops == projections + attention
    assert report.layers[0].flops > projections  # the attention itself is counted, not 0


@pytest.mark.parametrize(
    "model, shape",
    [
        ({"type": "linear", "out_features": 7, "bias": False}, [3, 11]),
        ({"type": "linear", "out_features": 7}, [2, 3, 11]),
        ({"type": "conv2d", "out_channels": 6, "kernel_size": 3, "stride": 2, "padding": 1}, [2, 4, 9, 7]),
        ({"type": "conv2d", "out_channels": 6, "kernel_size": [3, 1], "groups": 2, "bias": False}, [1, 4, 8, 8]),
        ({"type": "conv1d", "out_channels": 5, "kernel_size": 4, "dilation": 2}, [2, 3, 20]),
        ({"type": "attention", "heads": 4}, [2, 10, 32]),
        ({"type": "attention", "heads": 4, "kv_heads": 1, "causal": True}, [1, 12, 32]),
        ({"type": "dense_relu", "units": 3}, [4, 6]),
        ({"type": "fixed_matmul", "out_features": 3}, [4, 6]),
        ({"type": "tensor_reduction", "out_features": 3}, [4, 6]),
        ({"type": "conv_transpose2d", "out_channels": 6, "kernel_size": 3, "stride": 2, "groups": 2}, [2, 4, 5, 7]),
        ({"type": "conv_transpose1d", "out_channels": 3, "kernel_size": 4, "stride": 3}, [2, 5, 9]),
    ],
)  # fmt: skip
def test_flops_equal_flop_counter_mode(model, shape):
    assert inspect_spec(spec_of(model, shape)).flops == counted_by_torch(model, shape)


def test_model_flops_equal_flop_counter_mode_on_gpt2_shapes():
    spec = load_spec("configs/gpt2.yaml", ["vars.layers=2", "vars.vocab=1000", "input.high=1000"])
    built = build_spec(spec, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        built.model(torch.zeros(spec.head.input.shape, dtype=torch.int64, device="meta"))
    assert inspect_spec(spec).flops == counter.get_total_flops()


def declared(args: dict):
    """The layer type's declaration with these arguments."""
    return REGISTRY.get(args["type"]).model.model_validate(args)


def test_zero_flop_types_really_count_zero():
    for kind in ["relu", "layernorm", "dropout", "identity", "softmax", "relu6", "hardswish", "mish", "class_token"]:
        assert counted_by_torch({"type": kind}, [2, 3, 8]) == 0
        assert declared({"type": kind}).flops([(2, 3, 8)], (2, 3, 8)) == 0
    for model in [{"type": "permute", "dims": [0, 2, 1]}, {"type": "select", "index": 0}, {"type": "slice", "start": 1},
                  {"type": "upsample", "scale_factor": 2, "mode": "linear"}, {"type": "layer_scale"}]:  # fmt: skip
        assert counted_by_torch(model, [2, 3, 8]) == 0
        assert declared(model).flops([(2, 3, 8)], (2, 3, 8)) == 0


def test_tied_counts_entries_and_unique_differ():
    report = inspect_spec(load_spec("configs/chapter/tied_params.yaml"))
    assert report.parameters == 100 * 16 + 16 * 2  # embedding (tied head) + layernorm
    assert report.state_dict_parameters == report.parameters + 100 * 16
    assert report.ties == [["embed.weight", "head.weight"]]
    assert [p.tie for p in report.params] == [0, None, None, 0]


def test_gpt2_and_llama_counts_on_meta():
    gpt2 = inspect_spec(load_spec("configs/gpt2.yaml"))
    assert gpt2.parameters == 124_439_808 and gpt2.state_dict_parameters == 163_037_184
    llama = inspect_spec(load_spec("configs/llama2-70b.yaml"))
    assert llama.parameters == 68_976_648_192
    assert llama.bytes["bfloat16"] == 2 * 68_976_648_192


def test_memory_estimate():
    spec = spec_of({"type": "sequential", "layers": [{"type": "linear", "out_features": 8}, {"type": "relu"}]}, [4, 3])
    inference = inspect_spec(spec)
    weights = (3 * 8 + 8) * 4
    assert inference.memory.weights == weights
    # the planned peak: while the relu runs, the input [4, 3], the linear's output and the relu's [4, 8]
    assert inference.memory.activations == (4 * 3 + 4 * 8 + 4 * 8) * 4
    assert inference.memory.activations_at == "1 (relu)"
    train = inspect_spec(spec, train=True)
    assert train.memory.gradients == weights and train.memory.optimizer == 2 * weights
    assert train.memory.activations == (4 * 3 + 4 * 8 + 4 * 8 + 4 * 8) * 4
    half = inspect_spec(spec, dtype="bfloat16")
    assert half.memory.weights == weights // 2 and half.dtype == "bfloat16"


def test_init_coverage_and_unused_rules(write_spec):
    text = """\
netcfg: 1
input: {shape: [2, 4]}
model: {type: sequential, layers: [{type: linear, out_features: 3}, {type: linear, out_features: 2}]}
init:
  - {params: "*.weight", init: {kind: zeros}}
  - {params: "*.wieght", init: {kind: ones}}
"""
    report = inspect_spec(load_spec(write_spec(text)))
    assert report.init.default == ["0.bias", "1.bias"]
    assert report.init.unused_rules == [1]
    assert [u.matched for u in report.init.rules] == [2, 0]
    where = report.init.rules[1].where
    assert where.endswith(":6:5")
    assert report.warnings == [f"{where}: warning: init rule 1 selects no parameter (a typo in its selectors?)"]


def test_json_report_validates_against_its_schema():
    report = inspect_spec(load_spec("configs/chapter/shared_layer.yaml"))
    data = json.loads(report.model_dump_json())
    jsonschema.validate(data, Report.model_json_schema())
    assert data["parameters"] == 249
    assert Report.model_validate(data) == report


def test_checksum_of_an_output_whose_last_dimension_has_size_one_and_another_stride():
    from netcfg.actions.model import checksum

    strided = torch.arange(4.0).reshape(1, 4)[:, 0]  # shape [1], stride (4,)
    assert checksum(strided) == checksum(torch.tensor([0.0]))
