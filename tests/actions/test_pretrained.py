import pytest
import torch
from safetensors.torch import load_file

import netcfg
from netcfg.errors import CheckpointError
from netcfg.spec.loader import load_spec

SPEC = "configs/chapter/reuse_first_layers.yaml"


def test_mapped_tensors_are_loaded_and_frozen():
    model = netcfg.build(SPEC, device="cpu", seed=9)
    saved = load_file("configs/chapter/mlp_trained.safetensors")
    assert torch.equal(model.features[0].weight, saved["0.weight"])
    assert torch.equal(model.features[0].bias, saved["0.bias"])
    assert not model.features[0].weight.requires_grad and model.head.weight.requires_grad
    # The rest is initialized as usual, from the seed.
    again = netcfg.build(SPEC, device="cpu", seed=9)
    assert torch.equal(model.head.weight, again.head.weight)


def test_every_mapping_problem_is_reported_at_once():
    spec = load_spec(SPEC, ['pretrained.0.map={"9.": "features.0.", "2.": "head."}'])
    with pytest.raises(CheckpointError) as err:
        netcfg.build(spec, device="cpu")
    messages = [d.message for d in err.value.diagnostics]
    assert messages[0].startswith("pretrained 0: '9.' matches no tensor of configs/chapter/mlp_trained.safetensors")
    assert "'2.weight' is F32 [10, 256] in the file, 'head.weight' is F32 [3, 256] in the model" in messages[2]
    assert len(messages) == 3


def test_unknown_target_is_suggested():
    spec = load_spec(SPEC, ['pretrained.0.map={"0.": "feature.0."}'])
    with pytest.raises(CheckpointError, match=r"maps to 'feature.0.weight', which is not in the model; did you mean"):
        netcfg.build(spec, device="meta")


def test_inspect_names_the_file_each_loaded_parameter_comes_from_and_warns_of_overridden_rules():
    from netcfg.actions.inspection import inspect_spec

    rules = 'init=[{params: "*.weight", init: {kind: constant, value: 7}}, {params: "features.*", init: {kind: zeros}}]'
    report = inspect_spec(load_spec(SPEC, [rules]))
    source = "configs/chapter/mlp_trained.safetensors"
    init = {p.path: p.init for p in report.params}
    assert init == {
        "features.0.weight": f"pretrained: {source}:0.weight",
        "features.0.bias": f"pretrained: {source}:0.bias",
        "head.weight": "rule 0: constant",
        "head.bias": "default",
    }
    assert report.init.pretrained == {"features.0.weight": f"{source}:0.weight", "features.0.bias": f"{source}:0.bias"}
    assert [u.matched for u in report.init.rules] == [1, 0]
    assert report.init.default == ["head.bias"]
    assert report.warnings == [
        f"--set {rules}: warning: init rule 1 sets no parameter that is kept: "
        "`pretrained:` loads every parameter it selects"
    ]
    # The model agrees: the file wins over the rules, the head gets the rule.
    model = netcfg.build(load_spec(SPEC, [rules]), device="cpu")
    assert torch.equal(model.features[0].weight, load_file(source)["0.weight"])
    assert bool((model.head.weight == 7).all())


def test_a_file_of_20_000_tensors_is_checked_in_linear_time(tmp_path):
    """Every tensor mapped to a name the model does not have: it took half a minute (a did-you-mean
    per tensor over every key of the model); the first 20 are listed, the rest counted."""
    import json
    import struct
    import time

    from netcfg.actions import pretrained
    from netcfg.building.builder import build_spec
    from netcfg.spec.loader import load_spec_data

    file = tmp_path / "many.safetensors"  # written by hand: safetensors' writer takes seconds for 20,000
    entries = {f"blocks.{i}.weight": {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]}
               for i in range(20_000)}  # fmt: skip
    text = json.dumps(entries).encode()
    file.write_bytes(struct.pack("<Q", len(text)) + text + bytes(4 * 20_000))
    model = {"type": "repeat", "times": 100, "body": {"type": "linear", "out_features": 20}}
    source = {"file": str(file), "map": {"blocks.": "extra.", "block.": "x.", "blocks.1.": "y."}}
    data = {"netcfg": 1, "input": {"shape": [2, 20]}, "model": model, "pretrained": [source]}
    built = build_spec(load_spec_data(data, "spec"), device="meta")
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as err:
        pretrained.plan(built)
    assert time.perf_counter() - start < 5
    messages = [d.message for d in err.value.diagnostics]
    assert messages[0] == f"pretrained 0: 'block.' matches no tensor of {file}; did you mean 'blocks.'?"
    # The longest prefix wins: blocks.1.weight goes to y.weight, every other key to extra.N.weight.
    assert messages[1].startswith("pretrained 0: 'blocks.0.weight' maps to 'extra.0.weight', which is not in the model")
    assert messages[2].startswith("pretrained 0: 'blocks.1.weight' maps to 'y.weight', which is not in the model")
    assert messages[-1] == "pretrained 0: ... and 19,980 more tensors that do not fit"
    assert len(messages) == 22
