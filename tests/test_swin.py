"""configs/swin_t.yaml against torchvision's Swin-T written out by hand (benchmarks/twins.py):
its parameter count, its state_dict layout, its outputs given the same weights (eval mode, and
training mode with the same random draws), and its initialization. The full model is built
once per session; the shifted last stage and training mode are checked on a narrow copy."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import netcfg
from benchmarks.twins import SwinTransformer
from netcfg.actions.inspection import inspect_spec
from netcfg.spec.loader import load_spec
from tests.conftest import CONFIGS

SWIN_T = CONFIGS / "swin_t.yaml"
SWIN_T_PARAMS = 28_288_354  # torchvision.models.swin_t
# 448 x 448 keeps the last stage (14 x 14) shifted; 12 channels keep it cheap
NARROW = ["vars.image=448", "vars.embed=12", "vars.classes=10"]


def twin_key(key: str) -> str:
    """netcfg's name of a torchvision Swin state_dict key: the bias table and index sit in the
    block's `relative_position` node, not inside `attn`."""
    return key.replace(".attn.relative_position_", ".relative_position.relative_position_")


def load_into_twin(model: nn.Module, twin: nn.Module) -> None:
    state = model.state_dict()
    twin.load_state_dict({key: state[twin_key(key)] for key in twin.state_dict()})


def randomized(model: nn.Module, seed: int = 3) -> None:
    """Weights drawn so that every part shows in the output: matrices of standard deviation
    1 / sqrt(fan_in) (torchvision's 0.02 makes the attention scores nearly flat, hiding a wrong
    mask, bias or shift), norm weights, biases and the bias tables large and random (they start
    at ones, zeros and std 0.02, hiding a swapped or misplaced one)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, t in model.named_parameters():
            if t.dim() == 2 and "relative_position_bias_table" not in key:
                t.copy_(torch.randn(t.shape, generator=gen) / t.shape[1] ** 0.5)
            elif t.dim() <= 2:
                t.copy_(torch.rand(t.shape, generator=gen) * 2 - 0.5)


def stage_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The output of each of `features` (the end of a stage hides little of a block's attention,
    which the pooled logits average away), then the logits; eval mode."""
    outs = []
    hooks = [m.register_forward_hook(lambda _, args, out: outs.append(out)) for m in model.features]
    try:
        with torch.no_grad():
            outs.append(model.eval()(x))
    finally:
        for hook in hooks:
            hook.remove()
    return outs


@pytest.fixture(scope="session")
def swin_t() -> nn.Module:
    return netcfg.build(SWIN_T, device="cpu", seed=0)


def test_swin_t_has_torchvision_s_parameter_count_and_layout():
    model = netcfg.build(SWIN_T, device="meta")
    assert sum(p.numel() for p in model.parameters()) == SWIN_T_PARAMS
    with torch.device("meta"):
        twin = SwinTransformer()
    assert sum(p.numel() for p in twin.parameters()) == SWIN_T_PARAMS
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {twin_key(k): tuple(v.shape) for k, v in twin.state_dict().items()} == ours


def test_swin_t_flops_by_the_rules_equal_pytorch_s_count_of_the_twin():
    with torch.device("meta"):
        twin = SwinTransformer()
    with FlopCounterMode(display=False) as counter:
        twin(torch.empty(1, 3, 224, 224, device="meta"))
    report = inspect_spec(load_spec(SWIN_T))
    assert report.flops == counter.get_total_flops()  # 8.98 GFLOPs: torchvision's 4.49 GMACs


def test_swin_t_outputs_equal_torchvision_s_given_the_same_weights(swin_t):
    twin = SwinTransformer()
    saved = {k: v.clone() for k, v in swin_t.state_dict().items()}
    try:
        randomized(swin_t)
        load_into_twin(swin_t, twin)
        x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
        got, want = stage_outputs(swin_t, x), stage_outputs(twin, x)
    finally:
        swin_t.load_state_dict(saved)
    assert got[-1].shape == (1, 1000)
    for stage, (a, b) in enumerate(zip(got, want, strict=True)):
        assert (a - b).abs().max().item() <= 1e-5, f"features.{stage}" if stage < len(got) - 1 else "logits"


def test_a_shifted_last_stage_and_stochastic_depth_in_training_equal_torchvision_s():
    model = netcfg.build(SWIN_T, device="cpu", seed=0, overrides=[*NARROW, "vars.drop_path=0.5"])
    twin = SwinTransformer(embed=12, drop_path=0.5, classes=10)
    randomized(model)
    load_into_twin(model, twin)
    x = torch.randn(2, 3, 448, 448, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for a, b in zip(stage_outputs(model, x), stage_outputs(twin, x), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        torch.manual_seed(5)
        got = model.train()(x)
        torch.manual_seed(5)
        want = twin.train()(x)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    rates = [m.p for m in model.modules() if type(m).__name__ == "DropPath"]
    assert rates == [0.5 * i / 11 for i in range(12) for _ in range(2)]  # torchvision's schedule, per branch


def test_swin_t_is_initialized_as_torchvision_s(swin_t):
    for key, t in swin_t.state_dict().items():
        if key.startswith("features.0.0.") or key.endswith("relative_position_index"):
            continue  # the patch conv keeps PyTorch's default; the index is fixed
        if t.dim() == 2:  # linear and attention weights, the bias tables: truncated normal, std 0.02
            assert t.abs().max().item() <= 2.0 and t.std().item() == pytest.approx(0.02, rel=0.2), key
        else:  # layer norm weights one, every bias zero
            assert torch.equal(t, torch.full_like(t, 1.0 if key.endswith("weight") else 0.0)), key
