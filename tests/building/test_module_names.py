"""Module names as PyTorch takes them, and names of repeat copies from their index (issue 12)."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from netcfg.building.builder import build_spec
from netcfg.errors import SpecError
from netcfg.spec.loader import load_spec

REGNET_NAMES = """\
netcfg: 1
input: {shape: [1, 3, 8, 8]}
model:
  type: sequential
  layers:
    - {type: conv2d, name: stem, out_channels: 4, kernel_size: 1}
    - type: sequential
      name: trunk_output
      layers:
        - type: repeat
          name: block1
          times: 2
          body: {type: conv2d, name: "block1-${index}", out_channels: 4, kernel_size: 1}
        - type: repeat
          name: block2
          times: 3
          index: i
          body: {type: conv2d, name: "block2-${i}", out_channels: 6, kernel_size: 1}
    - {type: relu, name: "post act"}
"""


def test_names_with_dashes_and_spaces_are_module_names_as_written(write_spec):
    built = build_spec(load_spec(write_spec(REGNET_NAMES)), device="cpu")
    # torchvision's RegNet: trunk_output.block1.block1-0 ...; written by hand with the same names.
    trunk = nn.Sequential(OrderedDict(
        block1=nn.Sequential(OrderedDict((f"block1-{i}", nn.Conv2d(4, 4, 1)) for i in range(2))),
        block2=nn.Sequential(OrderedDict((f"block2-{i}", nn.Conv2d(4 if i == 0 else 6, 6, 1)) for i in range(3))),
    ))  # fmt: skip
    twin = nn.Sequential(OrderedDict([("stem", nn.Conv2d(3, 4, 1)), ("trunk_output", trunk), ("post act", nn.ReLU())]))
    ours = built.model.state_dict()
    assert list(ours) == list(twin.state_dict())
    assert "trunk_output.block1.block1-0.weight" in ours and "trunk_output.block2.block2-2.bias" in ours
    twin.load_state_dict(ours)
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(built.model(x), twin(x))
    assert built.model.get_submodule("trunk_output.block1.block1-1") is built.model.trunk_output.block1[1]


def test_a_name_in_a_repeat_body_names_each_copy(write_spec):
    # `name:` on the body renames the copies (default 0..N-1): here denselayer1..3, as torchvision's DenseNet.
    text = ("netcfg: 1\ninput: {shape: [2, 4]}\nmodel: {type: repeat, times: 3, "
            "body: {type: linear, out_features: 4, name: 'denselayer${index + 1}'}}\n")  # fmt: skip
    built = build_spec(load_spec(write_spec(text)), device="meta")
    assert [name for name, _ in built.model.named_children()] == ["denselayer1", "denselayer2", "denselayer3"]


@pytest.mark.parametrize(
    "name, message",
    [
        ("a.b", "'name': a module name has no '.' (it separates the names of a path)"),
        ("''", "'name': a module name cannot be empty"),
        ('"a\\nb"', "'name': a module name has no invisible characters (line breaks, controls)"),
    ],
)
def test_names_pytorch_refuses_are_located_errors(write_spec, name, message):
    path = write_spec(f"netcfg: 1\ninput: {{shape: [2, 4]}}\nmodel: {{type: sequential, layers: [{{type: relu, "
                      f"name: {name}}}]}}\n")  # fmt: skip
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert [str(d) for d in err.value.diagnostics] == [f"{path}:3:55: error: {message}"]


def test_copies_with_the_same_name_are_one_error(write_spec):
    text = ("netcfg: 1\ninput: {shape: [2, 4]}\nmodel: {type: repeat, times: 2, "
            "body: {type: relu, name: 'block-${index // 2}'}}\n")  # fmt: skip
    path = write_spec(text)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert [str(d) for d in err.value.diagnostics] == [
        f"{path}:3:58: error: two modules named 'block-0' here (the other is item 0)"
    ]
