"""The Python API: build, train, save with the spec, load back; save a hand-written twin."""

import copy
import json

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


# ---------------------------------------------------------------- save what load reads (issue 13)

TIED = CONFIGS / "chapter" / "tied_params.yaml"
SQUARE = """
netcfg: 1
input: {shape: [2, 8]}
model:
  type: sequential
  layers:
    - {type: linear, out_features: 8}
    - {type: relu}
    - {type: linear, out_features: 8}
"""


def broken_tie(model: nn.Module) -> None:
    model.head.weight = nn.Parameter(model.head.weight.detach().clone())


def new_tie(model: nn.Module) -> None:
    model[2].weight = model[0].weight


# name -> (spec, mutation returning the model to save or None, what the refusal says; None: it round-trips)
MUTATIONS = {
    "trained": (MLP, train_one_step, None),
    "same-shaped layer": (MLP, lambda m: m.__setitem__(2, nn.Linear(256, 10)), None),
    "bfloat16": (MLP, lambda m: m.to(torch.bfloat16), None),
    "float64": (MLP, lambda m: m.double(), None),
    "float16": (MLP, lambda m: m.half(), None),
    "frozen layer": (MLP, lambda m: m[0].requires_grad_(False) and None, None),
    "deep copy": (MLP, copy.deepcopy, None),
    "compiled": (MLP, torch.compile, None),
    "deep copy of the compiled": (MLP, lambda m: copy.deepcopy(torch.compile(m)), None),
    "tied, in bfloat16": (TIED, lambda m: m.to(torch.bfloat16), None),
    "replaced layer": (MLP, lambda m: m.__setitem__(2, nn.Linear(256, 5)),
                       "the model no longer matches its spec: module '2' is Linear(in_features=256, out_features=5, "
                       "bias=True), the spec makes Linear(in_features=256, out_features=10, bias=True) (and 2 more "
                       "difference(s)); load would not rebuild it: save it with spec= a spec that builds it"),
    "replaced activation": (MLP, lambda m: m.__setitem__(1, nn.GELU()),
                            "module '1' is GELU(approximate='none'), the spec makes ReLU();"),
    "layer without bias": (MLP, lambda m: m.__setitem__(2, nn.Linear(256, 10, bias=False)),
                           "module '2' is Linear(in_features=256, out_features=10, bias=False), the spec makes "
                           "Linear(in_features=256, out_features=10, bias=True)"),
    "appended layer": (MLP, lambda m: m.append(nn.ReLU()), "module '3' (ReLU()) is not in the spec's model"),
    "extra buffer": (MLP, lambda m: m.register_buffer("scale", torch.ones(3)),
                     "'scale' float32 [3] is not in the spec's model"),
    "one layer cast": (MLP, lambda m: m[2].to(torch.bfloat16) and None,
                       "the model's tensors have several dtypes ('0.weight' is float32, '2.weight' is bfloat16): "
                       "a spec has one; cast the whole model with model.to(dtype)"),
    "float8": (MLP, lambda m: m.to(torch.float8_e5m2),
               "the model's tensors are float8_e5m2; a spec's dtype is one of float32, bfloat16, float16, float64"),
    "meta device": (MLP, lambda m: m.to("meta"), "tensor '0.weight' is on the meta device: it holds no values to save"),
    "broken tie": (TIED, broken_tie, "'embed.weight' and 'head.weight' are no longer one tied tensor (the spec "
                                     "ties them)"),
    "new tie": ("square", new_tie, "'0.weight' and '2.weight' are one tensor, the spec makes them separate"),
}  # fmt: skip


def _input(spec_path):
    from netcfg.building.builder import sample_input

    return sample_input(netcfg.load_spec(spec_path), "cpu", 0)


@pytest.mark.parametrize("case", list(MUTATIONS))
def test_a_changed_model_is_saved_as_load_rebuilds_it_or_refused(case, tmp_path, write_spec):
    """Every mutation either round-trips (load gives the same tensors, dtypes, frozen flags and
    outputs as the mutated model) or is refused in one line with no file written: never a file
    that load refuses."""
    spec, mutate, refusal = MUTATIONS[case]
    spec = write_spec(SQUARE) if spec == "square" else spec
    model = netcfg.build(spec, seed=4)
    model = mutate(model) or model
    path = tmp_path / "changed.safetensors"
    if refusal is not None:
        with pytest.raises(netcfg.CheckpointError) as err:
            netcfg.save(model, path)
        (line,) = str(err.value).splitlines()
        assert line.startswith(f"{path}: error: ") and refusal in line, line
        assert not path.exists()
        return
    netcfg.save(model, path)
    loaded = netcfg.load(path)
    inner = getattr(model, "_orig_mod", model)  # what a compiled module runs
    expected = inner.state_dict()
    got = loaded.state_dict()
    assert list(got) == list(expected)
    for name in expected:
        assert got[name].dtype == expected[name].dtype and torch.equal(got[name], expected[name]), name
    assert [p.requires_grad for p in loaded.parameters()] == [p.requires_grad for p in inner.parameters()]
    x = _input(spec)
    if x.is_floating_point():
        x = x.to(next(inner.parameters()).dtype)
    inner.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), inner(x))


def test_copies_and_compiled_modules_save_the_same_bytes(tmp_path):
    model = netcfg.build(MLP, seed=2)
    netcfg.save(model, tmp_path / "a.safetensors")
    netcfg.save(copy.deepcopy(model), tmp_path / "b.safetensors")
    netcfg.save(torch.compile(model), tmp_path / "c.safetensors")
    a = (tmp_path / "a.safetensors").read_bytes()
    assert (tmp_path / "b.safetensors").read_bytes() == a
    assert (tmp_path / "c.safetensors").read_bytes() == a


def test_a_cast_is_recorded_in_the_spec_and_saving_again_keeps_its_text(tmp_path):
    from netcfg.io.safetensors_header import read_header

    model = netcfg.build(MLP, seed=2).to(torch.bfloat16)
    netcfg.save(model, tmp_path / "a.safetensors")
    text = read_header(tmp_path / "a.safetensors").metadata["netcfg.spec"]
    assert json.loads(text)["dtype"] == "bfloat16"
    netcfg.save(netcfg.load(tmp_path / "a.safetensors"), tmp_path / "b.safetensors")
    assert read_header(tmp_path / "b.safetensors").metadata["netcfg.spec"] == text
    built_so = netcfg.build(MLP, seed=2, dtype="bfloat16")  # a dtype given to build is recorded too
    netcfg.save(built_so, tmp_path / "c.safetensors")
    assert netcfg.load(tmp_path / "c.safetensors")[0].weight.dtype == torch.bfloat16


def test_the_api_saves_and_loads_shards(tmp_path):
    model = netcfg.build(MLP, seed=2)
    index = tmp_path / "mlp.safetensors.index.json"
    # Shards [0.weight] [0.bias] [2.weight, 2.bias]: 20,480, 1,024 and 10,280 bytes.
    netcfg.save(model, index, max_shard_size=11_000)
    assert len(list(tmp_path.glob("mlp-*-of-00003.safetensors"))) == 3
    again = netcfg.load(index)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True))
    fresh = netcfg.build(MLP, seed=9)
    netcfg.load_into(torch.compile(fresh), index)
    assert torch.equal(fresh[0].weight, model[0].weight)
