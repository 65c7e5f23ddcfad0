"""`splice: true`: a template's layers put flat into the enclosing list (issue 12)."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from netcfg.building.builder import build_spec
from netcfg.errors import BuildError, SpecError
from netcfg.spec.loader import load_spec, load_spec_data

VGG16 = """\
netcfg: 1
vars: {w: 64, classes: 10}
blocks:
  stage:
    args: {width: ~, convs: ~}
    body:
      type: sequential
      layers:
        - type: repeat
          times: "${convs}"
          splice: true
          body:
            type: sequential
            splice: true
            layers:
              - {type: conv2d, out_channels: "${width}", kernel_size: 3, padding: 1}
              - {type: relu}
        - {type: maxpool2d, kernel_size: 2, stride: 2}
input: {shape: [1, 3, 32, 32]}
model:
  type: sequential
  layers:
    - type: sequential
      name: features
      layers:
        - {type: block, block: stage, args: {width: "${w}", convs: 2}, splice: true}
        - {type: block, block: stage, args: {width: "${w * 2}", convs: 2}, splice: true}
        - {type: block, block: stage, args: {width: "${w * 4}", convs: 3}, splice: true}
        - {type: block, block: stage, args: {width: "${w * 8}", convs: 3}, splice: true}
        - {type: block, block: stage, args: {width: "${w * 8}", convs: 3}, splice: true}
    - {type: flatten, name: flatten}
    - {type: linear, name: classifier, out_features: "${classes}"}
"""


def vgg16_features(w: int) -> nn.Sequential:
    """torchvision.models.vgg.make_layers(cfgs['D']) with widths scaled by w / 64."""
    layers: list[nn.Module] = []
    channels = 3
    for v in [1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, v * w, kernel_size=3, padding=1), nn.ReLU()]
            channels = v * w
    return nn.Sequential(*layers)


def test_vgg16_features_have_torchvisions_flat_names_and_count(write_spec):
    built = build_spec(load_spec(write_spec(VGG16)), device="meta")
    features = built.model.features
    with torch.device("meta"):
        reference = vgg16_features(64)
    assert [(k, v.shape) for k, v in features.state_dict().items()] == [
        (k, v.shape) for k, v in reference.state_dict().items()
    ]
    assert [type(m) for m in features] == [type(m) for m in reference]
    assert sum(p.numel() for p in features.parameters()) == 14_714_688  # torchvision vgg16 without its classifier


def test_spliced_vgg_computes_what_its_twin_does(write_spec):
    built = build_spec(load_spec(write_spec(VGG16), ["vars.w=2"]), device="cpu")
    twin = nn.Sequential(OrderedDict(features=vgg16_features(2), flatten=nn.Flatten(), classifier=nn.Linear(16, 10)))
    twin.load_state_dict(built.model.state_dict())
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(built.model(x), twin(x))


def test_the_expanded_spec_is_flat_and_reloads_to_the_same_model(write_spec):
    spec = load_spec(write_spec(VGG16))
    layers = spec.data["model"]["layers"][0]["layers"]
    assert len(layers) == 13 * 2 + 5 and all("splice" not in layer for layer in layers)
    assert load_spec_data(spec.data, "again").model == spec.model


def test_errors_inside_spliced_layers_point_at_their_lines(write_spec):
    path = write_spec(VGG16)
    with pytest.raises(SpecError) as err:
        load_spec(path, ["model.layers.0.layers.3.args.width=0"])
    assert [str(d) for d in err.value.diagnostics] == [
        f"{path}:16:46: error: 'out_channels' must be greater than or equal to 1, got 0 (from block 'stage' at line 29)"
    ]
    with pytest.raises(BuildError) as err:
        build_spec(load_spec(path, ["input.shape=[1, 3, 16, 16]"]), device="meta")
    assert [str(d) for d in err.value.diagnostics] == [
        f"{path}:18:42: error: layer 'features.30' (maxpool2d) with input [1, 512, 1, 1]: window [2, 2] "
        "(dilation [1, 1], padding [0, 0]) does not fit input [1, 512, 1, 1]"
    ]


PAIR = """\
netcfg: 1
blocks:
  pair:
    body: {type: sequential, layers: [{type: linear, out_features: 4}, {type: relu}]}
input: {shape: [1, 4]}
model:
  type: sequential
  layers:
"""


def test_a_frozen_spliced_node_freezes_the_layers_it_puts_in_its_place(write_spec):
    text = (
        PAIR
        + """\
    - {type: block, block: pair, splice: true, trainable: false}
    - {type: block, block: pair, splice: "${1 > 0}"}
    - {type: block, block: pair, splice: false}
"""
    )
    built = build_spec(load_spec(write_spec(text)), device="meta")
    assert [name for name, _ in built.model.named_children()] == ["0", "1", "2", "3", "4"]
    assert [p.requires_grad for p in built.model.parameters()] == [False, False, True, True, True, True]
    assert isinstance(built.model[4], nn.Sequential)


def test_misplaced_splices_are_located_errors(write_spec):
    text = (
        PAIR
        + """\
    - {type: block, block: pair, splice: true, name: x}
    - {type: linear, out_features: 4, splice: true}
    - {type: parallel, branches: [{type: block, block: pair, splice: true}]}
    - {type: graph, nodes: {a: {type: block, block: pair, splice: true}}}
    - {type: block, block: pair, splice: 1}
"""
    )
    path = write_spec(text)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    only_in_lists = ("'splice: true' only in a sequential's `layers` or a repeat's body (copies in sequence): its "
                     "layers go in its place in that list")  # fmt: skip
    assert [str(d).removeprefix(f"{path}:") for d in err.value.diagnostics] == [
        "9:48: error: a spliced node has no module of its own: its layers take its place, so it takes no 'name'",
        "10:47: error: 'splice: true' puts the layers of a sequential in its place; this node expands to 'linear' "
        "(splice a sequential, a repeat in sequence, or a block whose body is one)",
        f"11:70: error: {only_in_lists}",
        f"12:67: error: {only_in_lists}",
        "13:42: error: 'splice' must be true or false, got 1",
    ]
