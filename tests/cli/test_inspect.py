"""netcfg inspect through the CLI."""

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from netcfg.cli.app import app
from tests.conftest import ROOT

# Every number below follows from the spec 20 -> 256 -> ReLU -> 10 with input [2, 20]:
# params 20*256+256 = 5,376 and 256*10+10 = 2,570 (total 7,946; shares 67.7% / 32.3%),
# FLOPs 2*2*20*256 = 20,480 and 2*2*256*10 = 10,240; 31,784 bytes of float32 weights;
# activations: the planned peak, while the ReLU runs: the input 2*20*4 B, the first linear's output
# and the ReLU's, 2*(2*256)*4 B: 4,256 B = 4.2 KiB.
MLP = """\
mlp  configs/mlp.yaml
input [2, 20] float32, parameters in float32

parameters   7,946
trainable    7,946
frozen       0
buffers      0
state_dict   4 tensors
size         31.0 KiB (float32 31.0 KiB)
FLOPs        30.72 kFLOPs = 15.36 kMACs per forward pass of the sample input
memory       inference: weights 31.0 KiB + buffers 0 B + activations 4.2 KiB = 35.2 KiB

layers
layer    type        input     output    params   share   FLOPs
(model)  sequential  [2, 20]   [2, 10]    7,946  100.0%  30,720
  0      linear      [2, 20]   [2, 256]   5,376   67.7%  20,480
  1      relu        [2, 256]  [2, 256]       0    0.0%       0
  2      linear      [2, 256]  [2, 10]    2,570   32.3%  10,240

parameters
path      shape      dtype    device  count  trainable  init     tie
0.weight  [256, 20]  float32  meta    5,120  yes        default
0.bias    [256]      float32  meta      256  yes        default
2.weight  [10, 256]  float32  meta    2,560  yes        default
2.bias    [10]       float32  meta       10  yes        default
"""


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def invoke(*args):
    return CliRunner().invoke(app, list(args))


def test_golden_mlp_tables():
    result = invoke("inspect", "configs/mlp.yaml", "--layers", "--params")
    assert result.exit_code == 0, result.output
    assert result.output == MLP


def test_json_has_the_documented_keys():
    result = invoke("inspect", "configs/gpt2.yaml", "--format", "json")
    data = json.loads(result.output)
    assert data["parameters"] == 124_439_808
    assert data["state_dict_parameters"] == 163_037_184
    assert data["ties"] == [["transformer.wte.weight", "lm_head.weight"]]
    for key in ("trainable", "frozen", "buffers", "bytes", "flops", "macs", "memory", "params", "layers", "init"):
        assert key in data


def test_csv_parameter_table_with_grep():
    result = invoke("inspect", "configs/gpt2.yaml", "--format", "csv", "--grep", r"h\.11\.attn")
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [r["path"] for r in rows] == [
        "transformer.h.11.attn.qkv.weight", "transformer.h.11.attn.qkv.bias",
        "transformer.h.11.attn.proj.weight", "transformer.h.11.attn.proj.bias",
    ]  # fmt: skip
    assert rows[0]["shape"] == "2304x768" and rows[0]["count"] == str(2304 * 768)
    assert rows[0]["init"] == "rule 0: normal" and rows[2]["init"] == "rule 2: normal"


def test_layers_depth_limits_the_tree():
    result = invoke("inspect", "configs/resnet18.yaml", "--layers", "--depth", "1")
    lines = result.output.split("\nlayers\n")[1].splitlines()
    assert [line.split()[0] for line in lines[1:]] == [
        "(model)", "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool",
        "flatten", "fc",
    ]  # fmt: skip


def test_shape_error_shows_the_layers_built_before_it(write_spec):
    path = write_spec(
        "netcfg: 1\ninput: {shape: [2, 8]}\nmodel:\n  type: sequential\n  layers:\n"
        "    - {type: linear, out_features: 4}\n    - {type: relu}\n"
        "    - {type: conv2d, out_channels: 3, kernel_size: 3}\n"
    )
    result = invoke("inspect", str(path))
    assert result.exit_code == 2
    assert "built before the error" in result.output
    assert "0      linear  [2, 8]  [2, 4]" in result.output
    assert result.output.rstrip().endswith(
        f"{path}:8:7: error: layer '2' (conv2d) with input [2, 4]: "
        "conv2d expects an input with 4 dimensions, got [2, 4]"
    )


def test_unused_init_rule_is_a_warning():
    result = invoke("inspect", "configs/mlp.yaml", "--set", "init=[{params: '*.wieght', init: {kind: zeros}}]")
    assert result.exit_code == 0
    assert "--set init=[{params: '*.wieght', init: {kind: zeros}}]: warning: init rule 0 selects no parameter" in (
        result.output
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "xml"], "error: Invalid value for '--format': 'xml' is not one of 'table', 'json', 'csv'"),
        (
            ["--dtype", "int8"],
            "error: Invalid value for '--dtype': 'int8' is not one of 'float32', 'bfloat16', 'float16', 'float64'",
        ),
        (["--grep", "("], "--grep (: error: invalid regular expression: missing ), unterminated subpattern"),
    ],
)
def test_bad_flags(args, message):
    result = invoke("inspect", "configs/mlp.yaml", *args)
    assert result.exit_code == 2
    assert result.output.startswith(message)


def test_grep_alone_filters_the_parameter_table_and_depth_alone_shows_layers():
    grep = invoke("inspect", "configs/mlp.yaml", "--grep", "bias")
    assert grep.output.rstrip().splitlines()[-2:] == [
        "0.bias  [256]  float32  meta      256  yes        default",
        "2.bias  [10]   float32  meta       10  yes        default",
    ]
    depth = invoke("inspect", "configs/mlp.yaml", "--depth", "0")
    assert depth.output.rstrip().splitlines()[-1].startswith("(model)  sequential")


def test_a_plugin_layer_whose_work_depends_on_values_is_not_counted(monkeypatch):
    # FixedHiddenMLP's while-loop reads the sum of its activations: no FLOPs on meta inputs.
    monkeypatch.chdir(ROOT)
    args = ["configs/plugins/fixed_hidden_mlp.yaml", "--plugin", "examples/plugins/fixed_hidden.py"]
    result = CliRunner().invoke(app, ["inspect", *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["flops_uncounted"] == ["0"]
    assert [layer["flops"] for layer in report["layers"]] == [None, None]
    table = CliRunner().invoke(app, ["inspect", *args, "--layers"])
    assert "plus the uncounted work of '0' (it depends on the input's values)" in table.output
