"""The shipped key maps load reference-named checkpoints into the shipped configs.

Each checkpoint is a small stand-in for the published one: a hand-written PyTorch model with
the reference's names, shapes and layouts (tests/actions/reference_layouts.py), random weights
(batch-norm statistics too), saved with safetensors. Loaded through the key map with
`strict: true` (every model tensor loaded, every file tensor used or deliberately ignored), the
netcfg model must compute what the hand-written one computes. With torchvision or transformers
installed, the same is checked against them directly.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import netcfg
from benchmarks.twins import RESNET_LAYOUTS
from netcfg.spec.keymap import KEYMAPS, shipped
from netcfg.spec.loader import load_spec
from tests.actions import reference_layouts as ref
from tests.conftest import CONFIGS

TOLERANCE = 1e-5

RESNET_SMALL = ["model.layers.0.out_channels=8", "model.layers.4.args.planes=8", "model.layers.5.args.planes=16",
                "model.layers.6.args.planes=32", "model.layers.7.args.planes=64", "vars.classes=10",
                "input.shape=[2,3,32,32]"]  # fmt: skip
VIT_SMALL = ["vars.layers=2", "vars.width=32", "vars.heads=4", "vars.mlp=48", "vars.patch=4", "vars.image=16",
             "vars.classes=10", "input.shape=[2,3,16,16]"]  # fmt: skip
GPT2_SMALL = ["vars.layers=2", "vars.width=32", "vars.heads=4", "vars.context=16", "vars.vocab=50", "input.high=50",
              "input.shape=[2,12]"]  # fmt: skip


def save(state: dict, path) -> str:
    save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, str(path))
    return str(path)


def loaded(config: str, overrides: list[str], file: str, keymap: str) -> torch.nn.Module:
    """The config built with `file` loaded through `keymap`, strictly (nothing missing, nothing unused)."""
    entry = f"pretrained=[{{file: '{file}', keymap: {keymap}, strict: true}}]"
    return netcfg.build(load_spec(CONFIGS / config, [*overrides, entry]), device="cpu").eval()


def assert_same(ours: torch.nn.Module, reference: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert got.shape == expected.shape
    difference = (got - expected).abs().max().item()
    assert difference <= TOLERANCE, f"max abs difference {difference:.3g}"


@pytest.mark.parametrize("name", list(RESNET_LAYOUTS))
def test_torchvision_resnet(name, tmp_path):
    block, layers = RESNET_LAYOUTS[name]
    reference = ref.randomize(ref.TorchvisionResNet(block, layers, (8, 16, 32, 64), stem=8, classes=10), seed=1)
    file = save(reference.state_dict(), tmp_path / f"{name}.safetensors")
    model = loaded(f"{name}.yaml", RESNET_SMALL, file, "torchvision_resnet")
    assert_same(model, reference, torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("legacy", [False, True], ids=["mlp.0", "linear_1"])
def test_torchvision_vit(legacy, tmp_path):
    reference = ref.randomize(ref.TorchvisionViT(16, 4, layers=2, heads=4, width=32, mlp=48, classes=10), seed=2)
    state = reference.state_dict()
    if legacy:  # checkpoints older than torchvision 0.13 name the MLP's linears linear_1, linear_2
        state = {k.replace("mlp.0.", "mlp.linear_1.").replace("mlp.3.", "mlp.linear_2."): v for k, v in state.items()}
    file = save(state, tmp_path / "vit.safetensors")
    model = loaded("vit_b_16.yaml", VIT_SMALL, file, "torchvision_vit")
    assert_same(model, reference, torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("layout", ["GPT2Model", "GPT2LMHeadModel"])
def test_hugging_face_gpt2(layout, tmp_path):
    reference = ref.randomize(ref.GPT2LMHeadModel(vocab=50, context=16, width=32, layers=2, heads=4), seed=3)
    # The published gpt2 file holds GPT2Model's keys (h.0.attn.c_attn.weight ...) and the causal-mask
    # buffers; a GPT2LMHeadModel saves transformer.* and may hold lm_head.weight, tied to wte.
    state = reference.transformer.state_dict() if layout == "GPT2Model" else reference.state_dict()
    assert ("h.0.attn.bias" in state) == (layout == "GPT2Model")
    file = save(state, tmp_path / "gpt2.safetensors")
    model = loaded("gpt2.yaml", GPT2_SMALL, file, "hf_gpt2")
    assert model.lm_head.weight is model.transformer.wte.weight
    assert_same(model, reference, torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(0)))


def test_hugging_face_llama(tmp_path):
    """configs/llama_tiny.yaml's sizes; grouped-query attention (4 query heads, 2 key/value heads):
    q, k and v are fused into netcfg's qkv rows; the rotary inv_freq buffers are ignored."""
    reference = ref.randomize(ref.LlamaForCausalLM(vocab=256, width=64, layers=2, heads=4, kv_heads=2, ffn=176), 4)
    state = reference.state_dict()
    assert "model.layers.0.self_attn.rotary_emb.inv_freq" in state
    file = save(state, tmp_path / "llama.safetensors")
    model = loaded("llama_tiny.yaml", [], file, "hf_llama")
    assert_same(model, reference, torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(0)))


def test_llama2_70b_config_takes_the_same_map(tmp_path):
    """The 70B config's structure at llama_tiny's sizes (and float32): the map fits it too."""
    reference = ref.randomize(ref.LlamaForCausalLM(vocab=64, width=32, layers=1, heads=4, kv_heads=2, ffn=48), 5)
    file = save(reference.state_dict(), tmp_path / "llama.safetensors")
    small = ["vars.layers=1", "vars.width=32", "vars.heads=4", "vars.kv_heads=2", "vars.ffn=48", "vars.vocab=64",
             "input.high=64", "input.shape=[2,8]", "dtype=float32"]  # fmt: skip
    model = loaded("llama2-70b.yaml", small, file, "hf_llama")
    assert_same(model, reference, torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0)))


def test_every_shipped_map_is_valid_and_documented():
    for name in KEYMAPS:
        rules = shipped(name)
        assert rules.description and (rules.rename or rules.map), name


# ---------------------------------------------------------------- the reference packages themselves


def test_torchvision_itself(tmp_path):
    torchvision = pytest.importorskip("torchvision", reason="torchvision is not installed (optional)")
    reference = ref.randomize(torchvision.models.resnet50(num_classes=10), seed=6)
    file = save(reference.state_dict(), tmp_path / "resnet50.safetensors")
    model = loaded("resnet50.yaml", ["vars.classes=10", "input.shape=[1,3,64,64]"], file, "torchvision_resnet")
    assert_same(model, reference, torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    vit = torchvision.models.VisionTransformer(image_size=16, patch_size=4, num_layers=2, num_heads=4,
                                               hidden_dim=32, mlp_dim=48, num_classes=10)  # fmt: skip
    vit = ref.randomize(vit, seed=7)
    file = save(vit.state_dict(), tmp_path / "vit.safetensors")
    model = loaded("vit_b_16.yaml", VIT_SMALL, file, "torchvision_vit")
    assert_same(model, vit, torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)))


def test_transformers_itself(tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed (optional)")
    config = transformers.GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=4,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)  # fmt: skip
    gpt2 = ref.randomize(transformers.GPT2LMHeadModel(config), seed=8)
    state = {k: v for k, v in gpt2.state_dict().items() if k != "lm_head.weight"}  # stored once, as wte
    file = save(state, tmp_path / "gpt2.safetensors")
    model = loaded("gpt2.yaml", GPT2_SMALL, file, "hf_gpt2")
    ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(0))
    assert_same(model, lambda x: gpt2(x).logits, ids)
    config = transformers.LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
                                      max_position_embeddings=128, tie_word_embeddings=False)  # fmt: skip
    llama = ref.randomize(transformers.LlamaForCausalLM(config), seed=9)
    file = save(llama.state_dict(), tmp_path / "llama.safetensors")
    model = loaded("llama_tiny.yaml", [], file, "hf_llama")
    ids = torch.randint(0, 256, (2, 32), generator=torch.Generator().manual_seed(0))
    assert_same(model, lambda x: llama(x).logits, ids)
