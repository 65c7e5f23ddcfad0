"""The Python API: build, train, save with the spec, load back; save a hand-written twin."""

import pytest
import torch
from torch import nn

import netcfg
from tests.conftest import CONFIGS

MLP = CONFIGS / "mlp.yaml"


def train_one_step(model: nn.Module) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(4, 20)).pow(2).mean().backward()
    optimizer.step()


def test_a_trained_model_is_saved_with_its_spec_and_loads_back(tmp_path):
    model = netcfg.build(MLP, seed=3)
    train_one_step(model)
    netcfg.save(model, tmp_path / "trained.safetensors")
    again = netcfg.load(tmp_path / "trained.safetensors")
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    fresh = netcfg.build(MLP, seed=3)
    assert not torch.equal(fresh[0].weight, again[0].weight)  # the trained values, not the seed's
    netcfg.save(again, tmp_path / "again.safetensors")  # a loaded model saves too
    netcfg.load_into(fresh, tmp_path / "again.safetensors")
    assert torch.equal(fresh[0].weight, model[0].weight)


def test_a_hand_written_twin_is_saved_with_a_spec(tmp_path):
    twin = nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 10))
    netcfg.save(twin, tmp_path / "twin.safetensors", spec=MLP)
    assert torch.equal(netcfg.load(tmp_path / "twin.safetensors")[2].bias, twin[2].bias)
    with pytest.raises(netcfg.CheckpointError, match="not made by netcfg.build or netcfg.load: pass spec="):
        netcfg.save(twin, tmp_path / "x.safetensors")
    with pytest.raises(netcfg.CheckpointError, match="does not fit the spec's model"):
        netcfg.save(nn.Linear(3, 4), tmp_path / "x.safetensors", spec=MLP)
