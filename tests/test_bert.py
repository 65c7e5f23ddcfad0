"""configs/bert_base.yaml against Hugging Face's BertModel written out by hand (the twin below
follows transformers' modeling_bert.py: eager attention, the additive extended mask): its
parameter count, its state_dict layout (Hugging Face's names but the fused qkv), and both
outputs given the same weights on padded batches, eval mode, on a small variant."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from typer.testing import CliRunner

from netcfg.actions.model import build_model
from netcfg.cli.app import app
from netcfg.spec.loader import load_spec
from tests.conftest import CONFIGS

BERT = CONFIGS / "bert_base.yaml"
BERT_BASE_PARAMS = 109_482_240  # transformers.BertModel(BertConfig()), bert-base-uncased
SMALL = dict(layers=2, width=32, heads=4, ffn=48, vocab=100, positions=20, length=12)


class Config:
    def __init__(self, layers=12, width=768, heads=12, ffn=3072, vocab=30522, positions=512, types=2, eps=1e-12):
        self.layers, self.width, self.heads, self.ffn = layers, width, heads, ffn
        self.vocab, self.positions, self.types, self.eps = vocab, positions, types, eps


class BertEmbeddings(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab, c.width, padding_idx=0)
        self.position_embeddings = nn.Embedding(c.positions, c.width)
        self.token_type_embeddings = nn.Embedding(c.types, c.width)
        self.LayerNorm = nn.LayerNorm(c.width, eps=c.eps)
        self.dropout = nn.Dropout(0.1)

    def forward(self, input_ids, token_type_ids):
        positions = torch.arange(input_ids.shape[1])[None]
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings(positions)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.heads, self.head_dim = c.heads, c.width // c.heads
        self.query, self.key, self.value = (nn.Linear(c.width, c.width) for _ in range(3))
        self.dropout = nn.Dropout(0.1)

    def split(self, x):
        return x.view(*x.shape[:2], self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x, extended_mask):
        q, k, v = self.split(self.query(x)), self.split(self.key(x)), self.split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + extended_mask
        context = self.dropout(scores.softmax(-1)) @ v
        return context.transpose(1, 2).reshape(x.shape)


class BertSelfOutput(nn.Module):
    """Also BertOutput: LayerNorm(dropout(dense(x)) + residual)."""

    def __init__(self, c: Config, width_in: int):
        super().__init__()
        self.dense = nn.Linear(width_in, c.width)
        self.LayerNorm = nn.LayerNorm(c.width, eps=c.eps)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x, residual):
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class BertAttention(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.self = BertSelfAttention(c)
        self.output = BertSelfOutput(c, c.width)

    def forward(self, x, extended_mask):
        return self.output(self.self(x, extended_mask), x)


class BertIntermediate(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.dense = nn.Linear(c.width, c.ffn)
        self.intermediate_act_fn = nn.GELU()  # hidden_act "gelu": the exact erf form

    def forward(self, x):
        return self.intermediate_act_fn(self.dense(x))


class BertLayer(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.attention = BertAttention(c)
        self.intermediate = BertIntermediate(c)
        self.output = BertSelfOutput(c, c.ffn)

    def forward(self, x, extended_mask):
        attended = self.attention(x, extended_mask)
        return self.output(self.intermediate(attended), attended)


class BertEncoder(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(c) for _ in range(c.layers))

    def forward(self, x, extended_mask):
        for layer in self.layer:
            x = layer(x, extended_mask)
        return x


class BertPooler(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.dense = nn.Linear(c.width, c.width)
        self.activation = nn.Tanh()

    def forward(self, x):
        return self.activation(self.dense(x[:, 0]))


class BertModel(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.embeddings = BertEmbeddings(c)
        self.encoder = BertEncoder(c)
        self.pooler = BertPooler(c)

    def forward(self, input_ids, token_type_ids, attention_mask):
        x = self.embeddings(input_ids, token_type_ids)
        dtype = x.dtype  # get_extended_attention_mask: 0 where attended, the dtype's minimum at padding
        extended = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
        hidden = self.encoder(x, extended)
        return {"last_hidden_state": hidden, "pooler_output": self.pooler(hidden)}


def hf_state_dict(ours: dict) -> dict:
    """Hugging Face's names and tensors from netcfg's: the fused qkv split into query, key and
    value (rows in that order), the attention's output projection is attention.output.dense."""
    out = {}
    for key, t in ours.items():
        if ".attention.self.qkv." in key:
            for part, piece in zip(("query", "key", "value"), t.chunk(3), strict=True):
                out[key.replace(".qkv.", f".{part}.")] = piece
        else:
            out[key.replace(".attention.self.proj.", ".attention.output.dense.")] = t
    return out


def small_spec(**sizes):
    return load_spec(str(BERT), [f"vars.{k}={v}" for k, v in {**SMALL, **sizes}.items()])


def randomized(model: nn.Module, seed: int = 5) -> None:
    """Weights under which every part shows in the outputs: matrices of std 1 / sqrt(fan_in)
    (BERT's 0.02 makes the scores nearly flat, hiding a wrong mask), norms and biases random."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in model.parameters():
            if t.dim() == 2:
                t.copy_(torch.randn(t.shape, generator=gen) / t.shape[1] ** 0.5)
            else:
                t.copy_(torch.rand(t.shape, generator=gen) * 2 - 0.5)


def padded_batch(vocab: int, length: int, lengths: list[int], seed: int = 0) -> dict:
    """Token ids, segments (A then B) and a mask of 1s up to each length, 0s (padding) after."""
    gen = torch.Generator().manual_seed(seed)
    n = len(lengths)
    mask = (torch.arange(length)[None] < torch.tensor(lengths)[:, None]).long()
    ids = torch.randint(1, vocab, (n, length), generator=gen) * mask
    types = (torch.arange(length)[None] >= torch.tensor(lengths)[:, None] // 2).long() * mask
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}


def test_bert_base_has_hugging_faces_parameter_count_and_layout():
    model = build_model(load_spec(str(BERT)), device="meta").model
    assert sum(p.numel() for p in model.parameters()) == BERT_BASE_PARAMS
    with torch.device("meta"):
        twin = BertModel(Config())
    assert sum(p.numel() for p in twin.parameters()) == BERT_BASE_PARAMS
    ours = hf_state_dict(model.state_dict())
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in twin.state_dict().items()}
    assert list(ours)[:5] == list(twin.state_dict())[:5]  # the embeddings in Hugging Face's order


@pytest.fixture(scope="module")
def small():
    built = build_model(small_spec(), device="cpu", seed=1)
    randomized(built.model)
    twin = BertModel(Config(**{k: v for k, v in SMALL.items() if k != "length"}))
    twin.load_state_dict(hf_state_dict(built.model.state_dict()))
    return built.model.eval(), twin.eval()


def test_small_bert_equals_the_twin_on_a_padded_batch(small):
    model, twin = small
    batch = padded_batch(SMALL["vocab"], SMALL["length"], [12, 7, 3, 1])
    with torch.no_grad():
        ours, theirs = model(**batch), twin(**batch)
    assert list(ours) == ["last_hidden_state", "pooler_output"]
    assert ours["last_hidden_state"].shape == (4, 12, 32) and ours["pooler_output"].shape == (4, 32)
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=1e-5)
    # the mask matters: without it the padded rows differ
    unmasked = twin(**{**batch, "attention_mask": torch.ones_like(batch["attention_mask"])})
    assert (unmasked["pooler_output"][1:] - theirs["pooler_output"][1:]).abs().amax() > 1e-2


def test_a_sequence_of_padding_only_gives_finite_outputs(small):
    """No key to attend to: the attention gives zeros (Hugging Face's averages every value)."""
    model, _ = small
    batch = padded_batch(SMALL["vocab"], SMALL["length"], [12, 0])
    with torch.no_grad():
        out = model(**batch)
    assert all(t.isfinite().all() for t in out.values())


def test_padding_changes_nothing_at_the_attended_positions(small):
    """What follows the mask's last 1 is never read: other ids there leave the outputs at the
    attended positions as they were."""
    model, _ = small
    batch = padded_batch(SMALL["vocab"], SMALL["length"], [5, 8])
    other = dict(batch, input_ids=torch.where(batch["attention_mask"] == 1, batch["input_ids"], 7))
    with torch.no_grad():
        a, b = model(**batch), model(**other)
    torch.testing.assert_close(a["pooler_output"], b["pooler_output"], rtol=0, atol=1e-6)
    torch.testing.assert_close(a["last_hidden_state"][0, :5], b["last_hidden_state"][0, :5], rtol=0, atol=1e-6)


def tensorflow_names(state: dict) -> dict:
    """A BertForPreTraining file converted from TensorFlow: `bert.` keys, LayerNorm gamma/beta,
    the position_ids buffer and pretraining heads (cls.*) beside the model's tensors."""
    out = {"bert." + k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
           for k, v in state.items()}  # fmt: skip
    width = state["pooler.dense.bias"].shape[0]
    out["bert.embeddings.position_ids"] = torch.arange(SMALL["positions"])[None]
    out["cls.predictions.bias"] = torch.zeros(SMALL["vocab"])
    out["cls.seq_relationship.weight"] = torch.zeros(2, width)
    return out


def through_key_map(state: dict, tmp_path) -> nn.Module:
    """The small variant built with `state` (Hugging Face's names) loaded by keymap: hf_bert, strictly."""
    file = tmp_path / "bert.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(file))
    entry = f"pretrained=[{{file: '{file}', keymap: hf_bert, strict: true}}]"
    spec = load_spec(str(BERT), [*(f"vars.{k}={v}" for k, v in SMALL.items()), entry])
    return build_model(spec, device="cpu").model.eval()


@pytest.mark.parametrize("layout", ["BertModel", "BertForPreTraining"])
def test_hugging_face_files_load_through_the_hf_bert_key_map(layout, tmp_path):
    twin = BertModel(Config(**{k: v for k, v in SMALL.items() if k != "length"}))
    randomized(twin, seed=7)
    state = twin.state_dict() if layout == "BertModel" else tensorflow_names(twin.state_dict())
    model = through_key_map(state, tmp_path)
    batch = padded_batch(SMALL["vocab"], SMALL["length"], [12, 4])
    with torch.no_grad():
        ours, theirs = model(**batch), twin.eval()(**batch)
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=0, atol=1e-5)


def test_small_bert_equals_transformers_bert_model(small, tmp_path):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed (optional check)")
    model, _ = small
    config = transformers.BertConfig(
        vocab_size=SMALL["vocab"], hidden_size=SMALL["width"], num_hidden_layers=SMALL["layers"],
        num_attention_heads=SMALL["heads"], intermediate_size=SMALL["ffn"], max_position_embeddings=SMALL["positions"],
        attn_implementation="eager",
    )  # fmt: skip
    reference = transformers.BertModel(config).eval()
    missing, unexpected = reference.load_state_dict(hf_state_dict(model.state_dict()), strict=False)
    assert not unexpected and all("position_ids" in k or "token_type_ids" in k for k in missing)
    batch = padded_batch(SMALL["vocab"], SMALL["length"], [12, 6, 2])
    with torch.no_grad():
        ours, theirs = model(**batch), reference(**batch)
    torch.testing.assert_close(ours["last_hidden_state"], theirs.last_hidden_state, rtol=0, atol=1e-5)
    torch.testing.assert_close(ours["pooler_output"], theirs.pooler_output, rtol=0, atol=1e-5)
    loaded = through_key_map(reference.state_dict(), tmp_path)  # transformers' own names, back through the map
    with torch.no_grad():
        again = loaded(**batch)
    torch.testing.assert_close(again["last_hidden_state"], theirs.last_hidden_state, rtol=0, atol=1e-5)


def test_run_on_a_padded_batch_file_writes_both_outputs_as_the_twin_computes(tmp_path):
    batch = padded_batch(SMALL["vocab"], SMALL["length"], [12, 9, 2], seed=3)
    given, written = tmp_path / "batch.safetensors", tmp_path / "out.safetensors"
    save_file(batch, str(given))
    sizes = [a for k, v in SMALL.items() for a in ("--set", f"vars.{k}={v}")]
    args = ["run", str(BERT), *sizes, "--input", str(given), "-o", str(written), "--seed", "4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "input  attention_mask [3, 12] int64" in result.output
    twin = BertModel(Config(**{k: v for k, v in SMALL.items() if k != "length"}))
    twin.load_state_dict(hf_state_dict(build_model(small_spec(), device="cpu", seed=4).model.state_dict()))
    with torch.no_grad():
        expected = twin.eval()(**batch)
    out = load_file(str(written))
    assert set(out) == {"last_hidden_state", "pooler_output"}
    for key, value in expected.items():
        torch.testing.assert_close(out[key], value, rtol=0, atol=1e-5)
