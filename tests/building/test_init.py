import math
from pathlib import Path

import pytest
import torch

import netcfg
from netcfg.building.builder import build_spec
from netcfg.errors import BuildError
from netcfg.spec.loader import load_spec

MLP = """\
netcfg: 1
input: {shape: [2, 4]}
model:
  type: sequential
  layers: [{type: linear, out_features: 300}, {type: relu}, {type: linear, out_features: 200}]
"""


def test_normal_weights_and_zero_bias():
    model = netcfg.build("configs/chapter/init_normal.yaml", device="cpu")
    assert torch.all(model[0].bias == 0) and torch.all(model[2].bias == 0)
    assert model[0].weight.std().item() == pytest.approx(0.01, rel=0.5)  # 32 samples: loose
    assert model[0].weight.abs().max().item() < 0.01 * 6


def test_constant_one_and_zero_bias():
    model = netcfg.build("configs/chapter/init_constant.yaml", device="cpu")
    assert torch.all(model[0].weight == 1) and torch.all(model[2].weight == 1)
    assert torch.all(model[0].bias == 0)


def test_xavier_on_the_first_layer_and_42_on_the_second():
    model = netcfg.build("configs/chapter/init_per_layer.yaml", device="cpu")
    bound = math.sqrt(6 / (4 + 8))  # Glorot: sqrt(6 / (fan_in + fan_out)) for a [8, 4] weight
    assert model[0].weight.abs().max().item() <= bound
    assert torch.all(model[2].weight == 42)


def test_mixture_draws_each_component_with_its_probability(write_spec):
    rules = Path("configs/chapter/init_mixture.yaml").read_text().split("\ninit:", 1)[1]
    text = MLP + "init:" + rules
    w = build_spec(load_spec(write_spec(text)), device="cpu").model[2].weight.detach().flatten()
    n = w.numel()  # 60,000 draws: each frequency within 1.5 points of its probability
    assert (w == 0).sum().item() / n == pytest.approx(0.5, abs=0.015)
    assert ((w >= 5) & (w < 10)).sum().item() / n == pytest.approx(0.25, abs=0.015)
    assert ((w >= -10) & (w < -5)).sum().item() / n == pytest.approx(0.25, abs=0.015)
    assert ((w.abs() > 0) & (w.abs() < 5)).sum().item() == 0


def test_later_rules_override_earlier_ones_and_unmatched_keep_the_default(write_spec):
    text = (
        MLP + "init:\n  - {init: {kind: constant, value: 1}}\n  - {params: '2.*', init: {kind: constant, value: 2}}\n"
    )
    built = build_spec(load_spec(write_spec(text)), device="cpu", seed=0)
    assert torch.all(built.model[0].weight == 1) and torch.all(built.model[2].bias == 2)
    assert built.init_rules == {"0.weight": 0, "0.bias": 0, "2.weight": 1, "2.bias": 1}
    plain = build_spec(load_spec(write_spec(MLP + "init:\n  - {params: '2.bias', init: {kind: zeros}}\n")), "cpu", 0)
    default = build_spec(load_spec(write_spec(MLP)), device="cpu", seed=0)
    assert torch.equal(plain.model[0].weight, default.model[0].weight)


def test_rules_select_by_layer_type(write_spec):
    text = MLP.replace("{type: relu}", "{type: layernorm}") + (
        "init:\n  - {layers: layernorm, init: {kind: constant, value: 3}}\n"
    )
    model = build_spec(load_spec(write_spec(text)), device="cpu").model
    assert torch.all(model[1].weight == 3) and torch.all(model[1].bias == 3)
    assert not torch.all(model[0].weight == 3)


def test_matrix_initializers_refuse_vectors_and_name_the_rule(write_spec):
    text = MLP + "init:\n  - {params: '*.bias', init: {kind: xavier_uniform}}\n"
    with pytest.raises(BuildError) as err:
        build_spec(load_spec(write_spec(text)), device="cpu")
    first = err.value.diagnostics[0]
    assert first.loc.line == 7
    assert (
        first.message
        == "cannot initialize '0.bias': xavier_uniform needs at least 2 dimensions, the tensor has shape [300]"
    )
    with pytest.raises(BuildError):
        build_spec(load_spec(write_spec(text)), device="meta")


def test_init_is_deterministic_under_the_seed(write_spec):
    text = MLP + "init:\n  - {init: {kind: orthogonal}, params: '*.weight'}\n"
    a, b = (build_spec(load_spec(write_spec(text)), device="cpu", seed=3).model[0].weight for _ in range(2))
    assert torch.equal(a, b)
    q = a.detach()
    torch.testing.assert_close(q.T @ q, torch.eye(4), atol=1e-5, rtol=0)
