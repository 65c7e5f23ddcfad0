import pytest
import torch
from safetensors.torch import load_file

import netcfg
from netcfg.errors import CheckpointError
from netcfg.loader import load_spec

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
