"""Layer arguments computed from the incoming shape when building (issue 12, expressions)."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from netcfg.actions.inspection import report
from netcfg.building.builder import build_spec
from netcfg.errors import BuildError, SpecError
from netcfg.spec.loader import load_spec, load_spec_data

DENSENET = """\
netcfg: 1
vars: {growth: 4, bn_size: 2}
blocks:
  dense_layer:
    body:
      type: graph
      nodes:
        norm1: {type: batchnorm2d}
        relu1: {type: relu}
        conv1: {type: conv2d, out_channels: "${bn_size * growth}", kernel_size: 1, bias: false}
        norm2: {type: batchnorm2d}
        relu2: {type: relu}
        conv2: {type: conv2d, out_channels: "${growth}", kernel_size: 3, padding: 1, bias: false}
        cat: {type: concat, inputs: [input, conv2], dim: 1}
  dense_block:
    args: {layers: ~}
    body: {type: repeat, times: "${layers}", body: {type: block, block: dense_layer, name: "denselayer${index + 1}"}}
  transition:
    body:
      type: sequential
      layers:
        - {type: batchnorm2d, name: norm}
        - {type: relu, name: relu}
        - {type: conv2d, name: conv, out_channels: "${in_channels // 2}", kernel_size: 1, bias: false}
        - {type: avgpool2d, name: pool, kernel_size: 2, stride: 2}
input: {shape: [2, 3, 16, 16]}
model:
  type: sequential
  layers:
    - {type: conv2d, name: conv0, out_channels: 8, kernel_size: 3, padding: 1, bias: false}
    - {type: block, block: dense_block, name: denseblock1, args: {layers: 3}}
    - {type: block, block: transition, name: transition1}
    - {type: block, block: dense_block, name: denseblock2, args: {layers: 2}}
    - {type: batchnorm2d, name: norm5}
"""


class DenseLayer(nn.Module):
    """torchvision's _DenseLayer (memory-efficient path off, no dropout)."""

    def __init__(self, channels: int, growth: int, bn_size: int):
        super().__init__()
        self.norm1, self.relu1 = nn.BatchNorm2d(channels), nn.ReLU()
        self.conv1 = nn.Conv2d(channels, bn_size * growth, 1, bias=False)
        self.norm2, self.relu2 = nn.BatchNorm2d(bn_size * growth), nn.ReLU()
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        return torch.cat([x, self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))], 1)


def twin() -> nn.Module:
    """The same network written by hand, with torchvision's DenseNet names."""

    def block(channels: int, layers: int) -> nn.Sequential:
        return nn.Sequential(
            OrderedDict((f"denselayer{i + 1}", DenseLayer(channels + i * 4, 4, 2)) for i in range(layers))
        )

    transition = nn.Sequential(OrderedDict(
        norm=nn.BatchNorm2d(20), relu=nn.ReLU(), conv=nn.Conv2d(20, 10, 1, bias=False), pool=nn.AvgPool2d(2, 2)
    ))  # fmt: skip
    return nn.Sequential(OrderedDict(
        conv0=nn.Conv2d(3, 8, 3, padding=1, bias=False), denseblock1=block(8, 3), transition1=transition,
        denseblock2=block(10, 2), norm5=nn.BatchNorm2d(18),
    ))  # fmt: skip


def test_densenet_transition_halves_its_input_and_matches_a_hand_written_twin(write_spec):
    built = build_spec(load_spec(write_spec(DENSENET)), device="cpu")
    reference = twin()
    ours = built.model.state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in reference.state_dict().items()}
    reference.load_state_dict(ours)
    for module in (built.model, reference):
        module.eval()
    x = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(built.model(x), reference(x))


def test_the_built_node_and_inspect_hold_the_number(write_spec):
    built = build_spec(load_spec(write_spec(DENSENET)), device="meta")
    assert built.visits["transition1.conv"].node.out_channels == (8 + 3 * 4) // 2
    rows = {row.path: row for row in report(built).layers}
    assert rows["transition1.conv"].computed == {"out_channels": 10}
    assert rows["conv0"].computed == {}


def test_the_expanded_spec_keeps_the_expression_and_rebuilds_the_same(write_spec):
    spec = load_spec(write_spec(DENSENET))
    conv = spec.data["model"]["layers"][2]["layers"][2]
    assert conv["out_channels"] == "${in_channels // 2}"
    again = build_spec(load_spec_data(spec.data, "again"), device="meta")
    assert again.visits["transition1.conv"].node.out_channels == 10


def test_other_names_are_written_in_as_the_values_of_this_use(write_spec):
    text = """\
netcfg: 1
vars: {base: 3}
blocks:
  squeeze:
    args: {ratio: 4}
    body: {type: conv2d, out_channels: "${max(in_channels // ratio, base)}", kernel_size: 1}
input: {shape: [2, 32, 4, 4]}
model:
  type: sequential
  layers:
    - {type: block, block: squeeze}
    - {type: block, block: squeeze, args: {ratio: 2}}
    - {type: avgpool2d, kernel_size: ["${in_height}", "${in_width}"]}
    - {type: flatten}
    - {type: linear, out_features: "${in_features * 2}"}
"""
    spec = load_spec(write_spec(text), ["vars.base=5"])
    assert spec.data["model"]["layers"][1]["out_channels"] == "${max(in_channels // 2, 5)}"
    built = build_spec(spec, device="meta")
    sizes = [built.visits[p].out_shape for p in ("0", "1", "2", "4")]
    assert sizes == [(2, 8, 4, 4), (2, 5, 4, 4), (2, 5, 1, 1), (2, 10)]  # max(32 // 4, 5), max(8 // 2, 5)


def build_errors(write_spec, text: str) -> list[str]:
    with pytest.raises(BuildError) as err:
        build_spec(load_spec(write_spec(text)), device="meta")
    return [str(d) for d in err.value.diagnostics]


def test_an_error_names_the_expression_and_the_instance(write_spec):
    text = DENSENET.replace('"${in_channels // 2}"', '"${in_channels // 2 - 10}"')
    path = write_spec(text)
    assert build_errors(write_spec, text) == [
        f"{path}:24:52: error: layer 'transition1.conv' (conv2d) with input [2, 20, 16, 16]: 'out_channels' must "
        "be greater than or equal to 1, got 0 (computed from out_channels '${in_channels // 2 - 10}')"
    ]


def test_a_name_the_input_does_not_have_is_an_error_at_the_layer(write_spec):
    text = "netcfg: 1\ninput: {shape: [2, 6]}\nmodel: {type: linear, out_features: '${in_height // 2}'}\n"
    path = write_spec(text)
    assert build_errors(write_spec, text) == [
        f"{path}:3:37: error: layer 'model' (linear) with input [2, 6]: out_features '${{in_height // 2}}': "
        "in_height is dimension 2 of a 4-D input [N, C, H, W]: this input has no such dimension"
    ]


def spec_errors(write_spec, text: str) -> list[str]:
    with pytest.raises(SpecError) as err:
        load_spec(write_spec(text))
    return [str(d).split(": error: ", 1)[1] for d in err.value.diagnostics]


def test_only_numeric_arguments_of_layers_may_read_the_incoming_shape(write_spec):
    text = """\
netcfg: 1
input: {shape: [2, 16, 8, 8]}
model:
  type: sequential
  layers:
    - {type: relu, name: "${in_channels}"}
    - {type: repeat, times: "${in_channels}", body: {type: relu}}
    - {type: conv2d, out_channels: "c${in_channels}", kernel_size: 1}
    - {type: conv2d, out_channels: "${in_channels * widht}", kernel_size: 1}
    - {type: conv2d, out_channels: "${in_channels}", kernel_size: 1, padding: "${in_height}"}
"""
    known_later = "known only when building (dimension 1 of the layer's input, C of [N, C, ...])"
    assert spec_errors(write_spec, text) == [
        "'name' reads the incoming shape (in_channels), known only when building: only a layer's numeric "
        "arguments may read it",
        f"'in_channels' is {known_later}: a layer's own numeric arguments may read it, as a whole '${{...}}' "
        "value (names available here: none)",
        f"'in_channels' is {known_later}: a layer's own numeric arguments may read it, as a whole '${{...}}' "
        "value (names available here: none)",
        "unknown name 'widht' in expression (names available: none)",
    ]
    # padding takes a number too (or 'same'): accepted, and computed when building


def test_a_shared_module_cannot_read_the_incoming_shape(write_spec):
    # One module for all uses: its arguments would differ per use.
    text = """\
netcfg: 1
input: {shape: [2, 3, 8, 8]}
shared:
  pool: {type: avgpool2d, kernel_size: ["${in_height // 2}", 2]}
model:
  type: sequential
  layers: [{type: shared, ref: pool}, {type: shared, ref: pool}]
"""
    assert spec_errors(write_spec, text) == [
        "a shared module is one module for all its uses: its arguments cannot read the incoming shape (give a "
        "number, or a var)"
    ]
