"""netcfg checkpoints and plain safetensors / hand-written PyTorch, both ways.

The twins (benchmarks/twins.py) are nanoGPT's GPT-2 and torchvision's ResNet written in
plain PyTorch; netcfg's specs use their module names, so the files are interchangeable.
"""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import load_file, load_model, save_model
from typer.testing import CliRunner

from benchmarks.twins import gpt2, resnet
from netcfg.actions import checkpoint as ck
from netcfg.actions.model import build_model, checksum
from netcfg.building.builder import sample_input
from netcfg.cli.app import app
from netcfg.spec.loader import load_spec
from tests.conftest import CONFIGS, ROOT

GPT_SET = ["vars.layers=2", "vars.vocab=1000", "input.high=1000"]
RESNET_SET = ["input.shape=[1, 3, 32, 32]"]
MODELS = {
    "gpt2": ("gpt2.yaml", GPT_SET, lambda: gpt2(layers=2, vocab=1000)),
    "resnet18": ("resnet18.yaml", RESNET_SET, lambda: resnet("basic", (2, 2, 2, 2))),
}


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def outputs(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("name", list(MODELS))
def test_netcfg_file_loads_in_plain_safetensors_and_into_the_twin(name, tmp_path):
    config, overrides, make_twin = MODELS[name]
    spec = load_spec(CONFIGS / config, overrides)
    built = build_model(spec, device="cpu", seed=3)
    path = tmp_path / f"{name}.safetensors"
    ck.save(built, path)

    plain = load_file(path)
    state = built.model.state_dict()
    stored = [g[0] for g in ck.alias_groups(built.model)]
    assert list(plain) != [] and set(plain) == set(stored)
    assert all(torch.equal(plain[k], state[k]) for k in plain)

    torch.manual_seed(99)  # the twin's own initialization differs: loading must overwrite all of it
    twin = make_twin()
    missing, unexpected = load_model(twin, path)
    assert (set(missing), unexpected) == (set(), [])
    x = sample_input(spec, "cpu")
    assert torch.equal(outputs(twin, x), outputs(built.model, x))
    if name == "gpt2":  # the tie survives load_model: one tensor in the twin
        assert twin.lm_head.weight.data_ptr() == twin.transformer.wte.weight.data_ptr()


@pytest.mark.parametrize("name", list(MODELS))
def test_twin_file_loads_in_netcfg_with_a_config(name, tmp_path):
    config, overrides, make_twin = MODELS[name]
    torch.manual_seed(5)
    twin = make_twin()
    path = tmp_path / f"twin_{name}.safetensors"
    save_model(twin, path)
    spec = load_spec(CONFIGS / config, overrides)
    expected = outputs(twin, sample_input(spec, "cpu"))

    sets = [a for o in overrides for a in ("--set", o)]
    result = invoke("load", path, "--config", f"configs/{config}", *sets, "--check")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    (value,) = re.findall(r"^checksum ([0-9a-f]{16})$", result.stdout, re.M)
    assert value == checksum(expected)

    loaded = ck.load(path, spec=spec, device="cpu")
    assert torch.equal(outputs(loaded.built.model, sample_input(spec, "cpu")), expected)
    if name == "gpt2":  # save_model kept one name of the tie; netcfg restores both as one Parameter
        model = loaded.built.model
        assert model.lm_head.weight is model.transformer.wte.weight


def test_a_file_without_a_spec_needs_config(tmp_path):
    path = tmp_path / "twin.safetensors"
    save_model(torch.nn.Linear(3, 2), path)
    result = invoke("load", path)
    assert result.exit_code == 2
    assert result.stderr == f"{path}: error: holds no netcfg spec (not saved by netcfg): pass --config SPEC\n"
    result = invoke("inspect", path)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1] == "not written by netcfg (no embedded spec)"
