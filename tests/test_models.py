"""The shipped ResNet and GPT-2 specs against hand-written PyTorch twins (benchmarks/twins.py).

Each big model is built once per session (the fixtures cache by name). The twins that
receive netcfg's weights are empty shells (built on meta, then `to_empty`), since every
tensor is overwritten by a strict `load_state_dict`; the twins' own initialization is
checked on real, smaller builds. Tests that change a netcfg model's tensors or mode put
them back before returning.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

import netcfg
from benchmarks.twins import GPT, gpt2, resnet, resnet_by_name

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

RESNET_PARAMS = {  # torchvision's published counts
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}
GPT2_UNIQUE = 124_439_808  # the head shares the token embedding
GPT2_ENTRIES = 163_037_184  # counting lm_head.weight and transformer.wte.weight separately
VOCAB = 50257
REAL = ["resnet18", "resnet50", "gpt2"]

Getter = Callable[[str], nn.Module]


def _twin(name: str) -> nn.Module:
    return gpt2() if name == "gpt2" else resnet_by_name(name)


def _cached(make: Callable[[str], nn.Module]) -> Getter:
    cache: dict[str, nn.Module] = {}

    def get(name: str) -> nn.Module:
        if name not in cache:
            cache[name] = make(name)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def netcfg_meta() -> Getter:
    """configs/<name>.yaml built by netcfg on the meta device."""
    return _cached(lambda name: netcfg.build(CONFIGS / f"{name}.yaml", device="meta"))


@pytest.fixture(scope="session")
def netcfg_cpu() -> Getter:
    """configs/<name>.yaml built by netcfg on the CPU (seed 0)."""
    return _cached(lambda name: netcfg.build(CONFIGS / f"{name}.yaml", device="cpu", seed=0))


class _SkipMetaNormal(TorchFunctionMode):
    """Skips normal draws on meta tensors: they hold no values, and PyTorch's first meta
    `normal_` in a process imports torch._dynamo (seconds)."""

    FUNCS = {torch.Tensor.normal_, nn.init.normal_, nn.init.kaiming_normal_, nn.init.trunc_normal_}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.FUNCS:
            target = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target
        return func(*args, **kwargs)


def _twin_on_meta(name: str) -> nn.Module:
    with torch.device("meta"), _SkipMetaNormal():
        return _twin(name)


@pytest.fixture(scope="session")
def twin_meta() -> Getter:
    return _cached(_twin_on_meta)


@pytest.fixture(scope="session")
def twin_shell() -> Getter:
    """The twin with uninitialized CPU tensors, to load netcfg's weights into."""

    def make(name: str) -> nn.Module:
        twin = _twin_on_meta(name).to_empty(device="cpu")
        if isinstance(twin, GPT):
            twin.tie_weights()
        return twin

    return _cached(make)


# ------------------------------------------------------------------------------ helpers


def n_unique(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def n_entries(model: nn.Module) -> int:
    return sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False))


def layout(model: nn.Module) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    return [(k, tuple(v.shape), v.dtype) for k, v in model.state_dict().items()]


def sample(name: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    if name == "gpt2":
        return torch.randint(0, VOCAB, (1, 16), generator=gen)
    return torch.randn(2, 3, 64, 64, generator=gen)


def assert_same(got: torch.Tensor, want: torch.Tensor, what: str = "") -> None:
    if not torch.equal(got, want):  # one cheap pass when bitwise equal, as it usually is
        torch.testing.assert_close(got, want, msg=lambda m: f"{what}: {m}")


@contextlib.contextmanager
def perturbed_eval(model: nn.Module, train: bool = False) -> Iterator[nn.Module]:
    """Eval mode (or train mode), with every small float tensor made random so that swapped or dropped ones
    change the output: norm weights and running variances in [0.5, 2.5] (large enough that an
    exact-vs-tanh GELU shows), biases and running means in [-0.5, 0.5]; all put back afterwards."""
    state = model.state_dict()
    saved = {k: v.clone() for k, v in state.items() if v.is_floating_point() and v.dim() <= 1}
    training = model.training
    gen = torch.Generator().manual_seed(2)
    try:
        with torch.no_grad():
            for k in saved:
                noise = torch.rand(state[k].shape, generator=gen)
                scale = k.endswith(("running_var", "weight"))
                state[k].copy_(2 * noise + 0.5 if scale else noise - 0.5)
        yield model.train(train)
    finally:
        with torch.no_grad():
            for k, v in saved.items():
                state[k].copy_(v)
        model.train(training)


def expected_init(kind: str, key: str, t: torch.Tensor, layers: int, fc_in: int) -> float | tuple[str, float]:
    """What the spec's init rules (and torchvision / GPT-2) give a tensor: a constant it must
    equal everywhere, or ("std", s) for a zero-mean random draw of standard deviation s."""
    leaf = key.rsplit(".", 1)[-1]
    if kind == "resnet":
        if leaf in ("running_mean", "num_batches_tracked"):
            return 0.0
        if leaf == "running_var":
            return 1.0
        if t.dim() == 4:  # conv: kaiming_normal, fan_out, relu
            return ("std", math.sqrt(2.0 / (t.shape[0] * t.shape[2] * t.shape[3])))
        if key.startswith("fc."):  # PyTorch's Linear default: U(+-1/sqrt(fan_in)), std 1/sqrt(3 fan_in)
            return ("std", 1.0 / math.sqrt(3 * fc_in))
        return 1.0 if leaf == "weight" else 0.0  # batch norm
    if "ln_" in key:  # gpt2
        return 1.0 if leaf == "weight" else 0.0
    if leaf == "bias":
        return 0.0
    if key.endswith(("c_proj.weight", "attn.proj.weight")):
        return ("std", 0.02 / math.sqrt(2 * layers))
    return ("std", 0.02)


def check_init(model: nn.Module, kind: str, layers: int = 12, fc_in: int = 512) -> None:
    for key, t in model.state_dict().items():
        want = expected_init(kind, key, t, layers, fc_in)
        if not isinstance(want, tuple):
            assert torch.equal(t, torch.full_like(t, want)), f"{key}: expected all {want}"
            continue
        std, n = want[1], t.numel()
        mean, got_std = t.mean().item(), t.std().item()
        assert abs(mean) < 5 * std / math.sqrt(n), f"{key}: mean {mean}, expected 0 (std {std}, n {n})"
        assert got_std == pytest.approx(std, rel=0.05), f"{key}: std {got_std}, expected {std}"


# ------------------------------------------------------------------------------ counts, meta


@pytest.mark.parametrize("name", list(RESNET_PARAMS))
def test_resnet_parameter_count_on_meta(name, netcfg_meta, twin_meta):
    model = netcfg_meta(name)
    assert all(t.is_meta for t in model.state_dict().values())
    assert n_unique(model) == RESNET_PARAMS[name]
    assert n_unique(twin_meta(name)) == RESNET_PARAMS[name]


@pytest.mark.parametrize("name", list(RESNET_PARAMS))
def test_resnet_layout_on_meta_matches_twin(name, netcfg_meta, twin_meta):
    assert [k for k, *_ in layout(netcfg_meta(name))] == [k for k, *_ in layout(twin_meta(name))]
    assert layout(netcfg_meta(name)) == layout(twin_meta(name))


def test_gpt2_parameter_counts_on_meta(netcfg_meta, twin_meta):
    model, twin = netcfg_meta("gpt2"), twin_meta("gpt2")
    assert all(t.is_meta for t in model.state_dict().values())
    assert n_unique(model) == GPT2_UNIQUE
    assert n_entries(model) == GPT2_ENTRIES
    assert sum(v.numel() for v in model.state_dict().values()) == GPT2_ENTRIES
    assert n_unique(twin) == GPT2_UNIQUE
    assert n_entries(twin) == GPT2_ENTRIES
    assert layout(model) == layout(twin)


# ------------------------------------------------------------------------------ real builds


@pytest.mark.parametrize("name", REAL)
def test_state_dict_layout_matches_twin(name, netcfg_cpu, twin_shell):
    model, twin = netcfg_cpu(name), twin_shell(name)
    assert [k for k, *_ in layout(model)] == [k for k, *_ in layout(twin)]  # names and order first: clearer diff
    assert layout(model) == layout(twin)
    assert all(t.device.type == "cpu" for t in model.state_dict().values())


@pytest.mark.parametrize("name", REAL)
def test_outputs_match_twin(name, netcfg_cpu, twin_shell):
    model, twin = netcfg_cpu(name), twin_shell(name)
    x = sample(name)
    with perturbed_eval(model), torch.no_grad():
        twin.load_state_dict(model.state_dict(), strict=True)
        got, want = model(x), twin.eval()(x)
    assert tuple(got.shape) == ((1, 16, VOCAB) if name == "gpt2" else (2, 1000))
    assert_same(got, want, name)


def test_gpt2_train_mode_dropout_matches_twin(netcfg_cpu, twin_shell):
    """Dropout after the embeddings, inside attention, after attention and after the MLP, drawn
    in the same order: with the same seed, train-mode outputs are the same."""
    model, twin = netcfg_cpu("gpt2"), twin_shell("gpt2")
    x = sample("gpt2")
    with perturbed_eval(model, train=True), torch.no_grad():
        twin.load_state_dict(model.state_dict(), strict=True)
        twin.train()
        torch.manual_seed(5)
        got = model(x)
        torch.manual_seed(5)
        want = twin(x)
        torch.manual_seed(6)
        other = model(x)
    assert not torch.equal(got, other)  # dropout is on
    assert_same(got, want, "gpt2 train mode")


def test_resnet18_spec_with_overrides_is_resnet50():
    """The recipe in configs/resnet18.yaml's header."""
    sets = ["vars.block=bottleneck", "vars.l1=3", "vars.l2=4", "vars.l3=6", "vars.l4=3"]
    model = netcfg.build(CONFIGS / "resnet18.yaml", device="meta", overrides=sets)
    assert n_unique(model) == RESNET_PARAMS["resnet50"]
    assert layout(model) == layout(_twin_on_meta("resnet50"))


@pytest.mark.parametrize("name", REAL)
def test_netcfg_initialization_follows_the_spec(name, netcfg_cpu):
    model = netcfg_cpu(name)
    assert model.training
    kind = "gpt2" if name == "gpt2" else "resnet"
    check_init(model, kind, fc_in=512 * (4 if name == "resnet50" else 1))


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
def test_twin_resnet_initialization(block):
    torch.manual_seed(0)
    check_init(resnet(block, [1, 1, 1, 1]), "resnet", fc_in=512 * (4 if block == "bottleneck" else 1))


def test_twin_gpt2_initialization():
    torch.manual_seed(0)
    twin = gpt2(layers=2, heads=2, width=64, context=32, vocab=500)
    assert twin.get_parameter("lm_head.weight") is twin.get_parameter("transformer.wte.weight")
    check_init(twin, "gpt2", layers=2)


def test_twin_resnet_rejects_bad_arguments():
    with pytest.raises(ValueError, match="block"):
        resnet("wide")
    with pytest.raises(ValueError, match="4 entries"):
        resnet("basic", [2, 2, 2])


def test_resnet152_twin_meta_build_allocates_nothing(twin_meta):
    assert all(t.is_meta for t in twin_meta("resnet152").state_dict().values())


def test_gpt2_head_is_tied_to_token_embedding(netcfg_cpu, twin_shell):
    model = netcfg_cpu("gpt2")
    assert model.get_parameter("lm_head.weight") is model.get_parameter("transformer.wte.weight")
    assert "lm_head.weight" not in dict(model.named_parameters())  # one Parameter, listed once
    state = model.state_dict()
    assert state["lm_head.weight"].data_ptr() == state["transformer.wte.weight"].data_ptr()
    twin = twin_shell("gpt2")
    assert twin.get_parameter("lm_head.weight") is twin.get_parameter("transformer.wte.weight")


def test_gpt2_tied_gradient_matches_twin(netcfg_cpu, twin_shell):
    model, twin = netcfg_cpu("gpt2"), twin_shell("gpt2")
    idx = sample("gpt2")
    targets = torch.randint(0, VOCAB, idx.shape, generator=torch.Generator().manual_seed(3))
    # Gradients for the tied matrix and a sample of the rest (first and last block, positions,
    # final norm); the other weights are frozen for speed, the backward pass still runs through them.
    checked = ("transformer.wte.", "transformer.wpe.", "transformer.h.0.", "transformer.h.11.", "transformer.ln_f.")
    frozen = [p for m in (model, twin) for n, p in m.named_parameters() if not n.startswith(checked)]
    with perturbed_eval(model):
        twin.load_state_dict(model.state_dict(), strict=True)
        twin.eval()
        try:
            for p in frozen:
                p.requires_grad_(False)
            for m in (model, twin):
                m.zero_grad(set_to_none=True)
                F.cross_entropy(m(idx).flatten(0, 1), targets.flatten()).backward()
            tied = model.get_parameter("transformer.wte.weight")
            assert model.get_parameter("lm_head.weight").grad is tied.grad
            unused = next(i for i in range(VOCAB) if i not in set(idx.flatten().tolist()))
            assert tied.grad[unused].abs().sum() > 0  # the head's share reaches rows no token looked up
            twin_params = dict(twin.named_parameters())
            compared = 0
            for n, p in model.named_parameters():
                if p.requires_grad:
                    assert p.grad is not None, n
                    assert_same(p.grad, twin_params[n].grad, n)
                    compared += 1
            assert compared == 1 + 1 + 2 * 12 + 2  # wte, wpe, two blocks of 12 tensors, ln_f
        finally:
            for p in frozen:
                p.requires_grad_(True)
            model.zero_grad(set_to_none=True)
            twin.zero_grad(set_to_none=True)


VIT_B_16 = 86_567_656  # torchvision's published count for vit_b_16
MOBILENET_V2 = 3_504_872  # torchvision's published count for mobilenet_v2


def test_mobilenet_v2_parameter_count_on_meta():
    from netcfg.building.builder import build_spec
    from netcfg.spec.loader import load_spec

    model = build_spec(load_spec(CONFIGS / "mobilenet_v2.yaml"), device="meta").model
    assert sum(p.numel() for p in model.parameters()) == MOBILENET_V2


def test_vit_b_16_parameter_count_on_meta():
    from netcfg.building.builder import build_spec
    from netcfg.spec.loader import load_spec

    model = build_spec(load_spec(CONFIGS / "vit_b_16.yaml"), device="meta").model
    assert sum(p.numel() for p in model.parameters()) == VIT_B_16


def test_vit_matches_its_twin_given_the_same_weights():
    from benchmarks.twins import ViT

    small = ["vars.layers=2", "vars.width=64", "vars.heads=4", "vars.mlp=128", "vars.image=32", "vars.patch=8",
             "vars.classes=10"]  # fmt: skip
    model = netcfg.build(CONFIGS / "vit_b_16.yaml", device="cpu", seed=0, overrides=small).eval()
    twin = ViT(image=32, patch=8, width=64, layers=2, heads=4, mlp=128, classes=10).eval()
    assert list(twin.state_dict()) == list(model.state_dict())
    twin.load_state_dict(model.state_dict())
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(model(x), twin(x))
