"""configs/transformer_seq2seq.yaml against a twin made of torch.nn.Transformer (its
TransformerEncoderLayer and TransformerDecoderLayer stacks, batch first) between the same
embeddings and head: the parameter count by formula and the twin's, and the logits given the same
weights on padded source batches, eval mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from netcfg.actions.model import build_model
from netcfg.spec.loader import load_spec
from tests.conftest import CONFIGS

SEQ2SEQ = CONFIGS / "transformer_seq2seq.yaml"
SIZES = dict(vocab=1000, width=64, heads=4, ffn=128, encoder_layers=2, decoder_layers=2, max_len=64)


class Seq2Seq(nn.Module):
    """Token embeddings plus learned positions, nn.Transformer (post-LN, ReLU), a linear head;
    id 0 of the source is padding (masked as keys in the encoder and in cross-attention)."""

    def __init__(self, vocab, width, heads, ffn, encoder_layers, decoder_layers, max_len, dropout=0.1):
        super().__init__()
        self.src_embed = nn.Embedding(vocab, width, padding_idx=0)
        self.src_pos = nn.Embedding(max_len, width)
        self.tgt_embed = nn.Embedding(vocab, width, padding_idx=0)
        self.tgt_pos = nn.Embedding(max_len, width)
        self.dropout = nn.Dropout(dropout)
        self.transformer = nn.Transformer(
            width, heads, encoder_layers, decoder_layers, ffn, dropout, batch_first=True
        )  # fmt: skip
        self.generator = nn.Linear(width, vocab)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        s = self.dropout(self.src_embed(src) + self.src_pos(torch.arange(src.shape[1])))
        t = self.dropout(self.tgt_embed(tgt) + self.tgt_pos(torch.arange(tgt.shape[1])))
        padding = src == 0  # PyTorch's key_padding_mask: True = ignore
        causal = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
        out = self.transformer(
            s, t, tgt_mask=causal, src_key_padding_mask=padding, memory_key_padding_mask=padding, tgt_is_causal=True
        )  # fmt: skip
        return self.generator(out)


def formula(vocab, width, heads, ffn, encoder_layers, decoder_layers, max_len) -> int:
    d, f = width, ffn
    attention = 4 * d * d + 4 * d  # q, k, v and output projections with biases
    feed_forward = 2 * d * f + f + d
    encoder_layer = attention + feed_forward + 2 * 2 * d  # two LayerNorms
    decoder_layer = 2 * attention + feed_forward + 3 * 2 * d
    embeddings = 2 * (vocab * d + max_len * d)
    norms = 2 * 2 * d  # after each stack
    return embeddings + encoder_layers * encoder_layer + decoder_layers * decoder_layer + norms + d * vocab + vocab


def torch_state_dict(ours: dict) -> dict:
    """nn.MultiheadAttention's names from netcfg's: in_proj_weight = the fused qkv (self-attention)
    or cat(q, kv) (cross-attention), out_proj = proj."""
    out = {}
    for key, t in ours.items():
        if ".multihead_attn.kv." in key:
            continue
        if ".multihead_attn.q." in key:
            t = torch.cat([t, ours[key.replace(".q.", ".kv.")]])
            key = key.replace(".q.", ".qkv.")
        key = key.replace(".qkv.weight", ".in_proj_weight").replace(".qkv.bias", ".in_proj_bias")
        out[key.replace(".proj.", ".out_proj.")] = t
    return out


def test_parameter_count_is_the_formula_s_and_nn_transformer_s():
    model = build_model(load_spec(str(SEQ2SEQ)), device="meta").model
    ours = sum(p.numel() for p in model.parameters())
    with torch.device("meta"):
        twin = Seq2Seq(**SIZES)
    assert ours == formula(**SIZES) == sum(p.numel() for p in twin.parameters()) == 368_872
    mapped = {k: v.shape for k, v in torch_state_dict(model.state_dict()).items()}
    assert mapped == {k: v.shape for k, v in twin.state_dict().items()}


@pytest.fixture(scope="module")
def pair():
    built = build_model(load_spec(str(SEQ2SEQ)), device="cpu", seed=2)
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():  # weights of std 1 / sqrt(fan_in): PyTorch's xavier/uniform ones show less of a mask
        for t in built.model.parameters():
            t.copy_(torch.randn(t.shape, generator=gen) / t.shape[-1] ** 0.5 if t.dim() == 2 else torch.rand(t.shape))
    twin = Seq2Seq(**SIZES)
    twin.load_state_dict(torch_state_dict(built.model.state_dict()))
    return built.model.eval(), twin.eval()


def batch(src_lengths: list[int], src_len: int = 12, tgt_len: int = 10, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    n = len(src_lengths)
    keep = torch.arange(src_len)[None] < torch.tensor(src_lengths)[:, None]
    src = torch.randint(1, SIZES["vocab"], (n, src_len), generator=gen) * keep  # 0 after each length: padding
    return src, torch.randint(1, SIZES["vocab"], (n, tgt_len), generator=gen)


def test_logits_equal_nn_transformer_s_on_padded_sources(pair):
    model, twin = pair
    src, tgt = batch([12, 8, 3])
    torch.backends.mha.set_fastpath_enabled(False)  # the reference path (the fast one drops padded rows)
    try:
        with torch.no_grad():
            ours, theirs = model(src, tgt), twin(src, tgt)
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    assert ours.shape == (3, 10, SIZES["vocab"])
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_the_decoder_is_causal_and_reads_only_the_unpadded_source(pair):
    model, _ = pair
    src, tgt = batch([12, 5], seed=1)
    later = tgt.clone()
    later[:, 6:] = 9  # other tokens from position 6 on
    shorter = src.clone()
    shorter[1, 4] = 0  # one more padded source position
    with torch.no_grad():
        base, changed, masked = model(src, tgt), model(src, later), model(shorter, tgt)
    torch.testing.assert_close(base[:, :6], changed[:, :6], rtol=0, atol=1e-6)
    assert (base[:, 6:] - changed[:, 6:]).abs().amax() > 1e-3
    torch.testing.assert_close(base[0], masked[0], rtol=0, atol=1e-6)
    assert (base[1] - masked[1]).abs().amax() > 1e-3
