"""Attention with masks, a score bias and a second source, and Swin's relative position bias and
shifted-window mask, against PyTorch's own nn.MultiheadAttention and hand-written references
(Hugging Face Llama's attention written out here, torchvision's Swin's in benchmarks/twins.py)."""

from __future__ import annotations

from typing import Literal

import pytest
import torch
from torch import nn

from benchmarks.twins import relative_position_index, shift_mask
from netcfg.building.builder import build_spec
from netcfg.building.layers.attention import Attention, RelativePositionBias, WindowMask
from netcfg.catalogue import attention as d
from netcfg.errors import BuildError
from netcfg.spec.loader import load_spec_data


def layer(dim: int = 16, kv_dim: int | None = None, **args) -> Attention:
    torch.manual_seed(0)
    return Attention(d.Attention(type="attention", **args), dim, kv_dim or dim).eval()


def reference(q, k, v, added):
    """softmax(q k^T / sqrt(head_dim) + added) v on [N, heads, T, head_dim] tensors."""
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    return (scores + added).softmax(-1) @ v


def heads(x: torch.Tensor, n: int) -> torch.Tensor:
    return x.unflatten(-1, (n, -1)).transpose(-2, -3)


def mha_twin(attn: Attention, kdim: int | None = None) -> nn.MultiheadAttention:
    """PyTorch's own multi-head attention holding the same weights: fused qkv rows are its
    in_proj_weight (queries, keys, values); cross-attention's q and kv its q/k/v_proj_weight."""
    dim = attn.proj.out_features
    mha = nn.MultiheadAttention(dim, attn.heads, batch_first=True, kdim=kdim, vdim=kdim).eval()
    with torch.no_grad():
        if attn.cross:
            k, v = attn.kv.weight.chunk(2)
            mha.q_proj_weight.copy_(attn.q.weight)
            mha.k_proj_weight.copy_(k)
            mha.v_proj_weight.copy_(v)
            mha.in_proj_bias.copy_(torch.cat([attn.q.bias, attn.kv.bias]))
        else:
            mha.in_proj_weight.copy_(attn.qkv.weight)
            mha.in_proj_bias.copy_(attn.qkv.bias)
        mha.out_proj.weight.copy_(attn.proj.weight)
        mha.out_proj.bias.copy_(attn.proj.bias)
    return mha


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_a_key_padding_mask_is_hugging_face_s_attention_mask(dtype):
    attn = layer(heads=4, mask="key_padding")
    x = torch.randn(2, 5, 16)
    keep = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])  # 1 = attend, 0 = padding
    expected, _ = mha_twin(attn)(x, x, x, key_padding_mask=keep == 0)  # PyTorch's: True = padding
    torch.testing.assert_close(attn(x, keep.to(dtype)), expected)


@pytest.mark.parametrize("shape", [[5, 5], [2, 5, 5], [2, 4, 5, 5], [1, 4, 1, 5]])
def test_a_bool_mask_of_each_shape_keeps_the_scores_it_marks_true(shape):
    attn = layer(heads=4, mask="bool")
    x = torch.randn(2, 5, 16)
    keep = torch.rand(shape) > 0.4
    keep[..., 0] = True  # every query sees a key
    full = keep.expand(2, 4, 5, 5) if len(shape) != 3 else keep[:, None].expand(2, 4, 5, 5)
    expected, _ = mha_twin(attn)(x, x, x, attn_mask=~full.reshape(8, 5, 5))  # PyTorch's: True = forbidden
    torch.testing.assert_close(attn(x, keep), expected)


def test_an_additive_mask_and_a_score_bias_are_added_to_the_scores_with_the_causal_mask():
    attn = layer(heads=4, kv_heads=2, mask="additive", score_bias=True, causal=True)
    x = torch.randn(2, 5, 16)
    mask, bias = torch.randn(2, 5, 5), torch.randn(4, 5, 5)
    q, k, v = attn.qkv(x).split([16, 8, 8], -1)
    q, k, v = heads(q, 4), heads(k, 2).repeat_interleave(2, 1), heads(v, 2).repeat_interleave(2, 1)
    causal = torch.zeros(5, 5).masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1), float("-inf"))
    y = reference(q, k, v, mask[:, None] + bias + causal)
    torch.testing.assert_close(attn(x, mask, bias), attn.proj(y.transpose(1, 2).reshape(2, 5, 16)))


def test_cross_attention_reads_keys_and_values_from_its_second_input():
    attn = layer(dim=16, kv_dim=6, heads=4, cross=True, mask="key_padding")
    x, source = torch.randn(2, 5, 16), torch.randn(2, 7, 6)
    keep = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    expected, _ = mha_twin(attn, kdim=6)(x, source, source, key_padding_mask=keep == 0)
    torch.testing.assert_close(attn(x, source, keep), expected)
    assert [n for n, _ in attn.named_parameters()] == ["q.weight", "q.bias", "kv.weight", "kv.bias", "proj.weight",
                                                      "proj.bias"]  # fmt: skip


def test_several_batch_dimensions_are_attended_one_by_one():
    attn = layer(heads=2, mask="additive", score_bias=True)
    x, mask, bias = torch.randn(2, 3, 4, 16), torch.randn(1, 3, 4, 4), torch.randn(2, 4, 4)
    y = attn(x, mask, bias)
    for n in range(2):
        for w in range(3):
            torch.testing.assert_close(y[n, w], attn(x[n, w][None], mask[0, w][None], bias)[0])


class HuggingFaceLlamaAttention(nn.Module):
    """transformers' LlamaAttention (eager), written out: separate q/k/v projections, rotary
    positions by rotate_half, grouped key/value heads repeated to every query head."""

    def __init__(self, dim: int, heads: int, kv_heads: int, base: float = 10000.0):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim, self.base = heads, kv_heads, dim // heads, base
        self.q_proj = nn.Linear(dim, heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(dim, kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(dim, kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(heads * self.head_dim, dim, bias=False)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        q = self.q_proj(x).view(n, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(n, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(n, t, self.kv_heads, self.head_dim).transpose(1, 2)
        inv_freq = 1.0 / (self.base ** (torch.arange(0, self.head_dim, 2).float() / self.head_dim))
        freqs = torch.arange(t).float()[:, None] * inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        q = q * emb.cos() + rotate_half(q) * emb.sin()
        k = k * emb.cos() + rotate_half(k) * emb.sin()
        groups = self.heads // self.kv_heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        causal = torch.full((t, t), torch.finfo(x.dtype).min).triu(1)
        padding = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(x.dtype).min
        weights = (q @ k.transpose(2, 3) / self.head_dim**0.5 + causal + padding).softmax(-1)
        return self.o_proj((weights @ v).transpose(1, 2).reshape(n, t, -1))


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def test_fused_qkv_rows_and_rotary_positions_are_hugging_face_llama_s():
    attn = layer(dim=32, heads=4, kv_heads=2, rotary=True, causal=True, bias=False, mask="key_padding")
    twin = HuggingFaceLlamaAttention(32, 4, 2)
    q, k, v = attn.qkv.weight.split([32, 16, 16])  # qkv.weight = cat([q_proj, k_proj, v_proj].weight)
    weights = {"q_proj.weight": q, "k_proj.weight": k, "v_proj.weight": v, "o_proj.weight": attn.proj.weight}
    twin.load_state_dict(weights)
    x, keep = torch.randn(2, 6, 32), torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    with torch.no_grad():
        torch.testing.assert_close(attn(x, keep), twin(x, keep))


def test_the_relative_position_bias_is_torchvision_s():
    bias = RelativePositionBias((3, 2), heads=4)
    index = relative_position_index([3, 2])
    assert torch.equal(bias.relative_position_index, index)
    expected = bias.relative_position_bias_table[index].view(6, 6, -1).permute(2, 0, 1)
    torch.testing.assert_close(bias(torch.empty(0)), expected)
    assert bias.relative_position_bias_table.shape == (5 * 3, 4)


@pytest.mark.parametrize(("size", "window", "shift"), [((14, 14), (7, 7), (3, 3)), ((8, 12), (4, 3), (2, 1))])
def test_the_window_mask_is_torchvision_s(size, window, shift):
    mask = WindowMask(window, shift, -100.0)(torch.empty(2, *size, 5))
    assert mask.shape == (1, size[0] // window[0] * size[1] // window[1], window[0] * window[1], window[0] * window[1])
    torch.testing.assert_close(mask[0], shift_mask(*size, list(window), list(shift)))


def test_without_a_shift_the_window_mask_is_zero():
    assert not WindowMask((2, 2), (0, 0), -100.0)(torch.empty(1, 4, 4, 1)).any()


# ---------------------------------------------------------------- in a spec


def spec_of(nodes: dict, shape: list[int], **input_fields):
    model = {"type": "graph", "nodes": nodes}
    return load_spec_data({"netcfg": 1, "input": {"shape": shape, **input_fields}, "model": model}, "generated")


def build_error(nodes: dict, shape: list[int], **input_fields) -> str:
    with pytest.raises(BuildError) as err:
        build_spec(spec_of(nodes, shape, **input_fields), device="meta")
    assert len(err.value.diagnostics) == 1
    return str(err.value)


def test_a_layer_given_another_number_of_inputs_than_its_arguments_ask_is_refused_at_its_inputs():
    message = build_error({"a": {"type": "attention", "heads": 2, "mask": "additive", "inputs": ["input"]}}, [2, 4, 8])
    assert message.endswith("layer 'a' (attention) takes 2 inputs (input, additive mask), got 1")
    message = build_error({"r": {"type": "relu"}, "a": {"type": "linear", "out_features": 2, "inputs": ["r", "r"]}},
                          [2, 4])  # fmt: skip
    assert message.endswith("layer 'a' (linear) takes one input, got 2")


def test_masks_of_the_wrong_shape_or_dtype_are_refused_at_the_mask_argument():
    def attention(mask: str) -> dict:
        return {"type": "attention", "heads": 2, "mask": mask, "inputs": ["input", "m"]}

    wide = {"m": {"type": "linear", "out_features": 3, "inputs": "input"}}
    message = build_error({**wide, "a": attention("additive")}, [2, 4, 8])
    assert "the additive mask [2, 4, 3] fits none of [T, S] = [4, 4], [N, T, S] = [2, 4, 4], " in message
    message = build_error({**wide, "a": attention("key_padding")}, [2, 4, 8])
    assert "a key_padding mask holds bool or integer values (1 = attend, 0 = padding), this one is float32" in message
    message = build_error({**wide, "a": attention("bool")}, [2, 4, 8])
    assert "a bool mask must be bool (True = may attend), this one is float32 (floats added to the scores" in message
    ids = {"e": {"type": "embedding", "num_embeddings": 9, "embedding_dim": 4, "inputs": "input"},
           "a": {"type": "attention", "heads": 2, "mask": "additive", "inputs": ["e", "input"]}}  # fmt: skip
    message = build_error(ids, [2, 4], dtype="int64", high=9)
    assert "an additive mask must be floating-point (added to the scores), this one is int64" in message


def test_a_score_bias_or_a_source_that_does_not_fit_is_refused():
    nodes = {"b": {"type": "relative_position_bias", "window": 2, "heads": 3},
             "a": {"type": "attention", "heads": 2, "score_bias": True, "inputs": ["input", "b"]}}  # fmt: skip
    assert "the score bias [3, 4, 4] does not broadcast to the scores [N, heads, T, S] = [2, 2, 4, 4]" in build_error(
        nodes, [2, 4, 8]
    )
    cross = {"s": {"type": "permute", "dims": [1, 0, 2]},
             "a": {"type": "attention", "heads": 2, "cross": True, "inputs": ["input", "s"]}}  # fmt: skip
    message = build_error(cross, [2, 4, 8])
    assert "the keys and values input [4, 2, 8] does not fit the queries [2, 4, 8]" in message


def test_rotary_positions_are_for_self_attention_only():
    nodes = {"a": {"type": "attention", "heads": 2, "cross": True, "rotary": True, "inputs": ["input", "input"]}}
    assert "rotary positions are for self-attention (cross: false)" in build_error(nodes, [2, 4, 8])


def test_a_cross_attention_spec_builds_counts_and_runs():
    nodes = {
        "source": {"type": "linear", "out_features": 6},
        "a": {"type": "attention", "heads": 2, "kv_heads": 1, "cross": True, "inputs": ["input", "source"]},
    }
    built = build_spec(spec_of(nodes, [2, 4, 8]), device="cpu")
    attn = built.model.a
    # q 8 x 8 + 8, kv (2 x 1 x 4) x 6 + 8, proj 8 x 8 + 8
    assert sum(p.numel() for p in attn.parameters()) == 72 + 56 + 72
    x = torch.randn(2, 4, 8)
    source = built.model.source(x)
    q = heads(attn.q(x), 2)
    k, v = (heads(t, 1).expand(2, 2, 4, 4) for t in attn.kv(source).chunk(2, -1))
    y = reference(q, k, v, torch.zeros(4, 4)).transpose(1, 2).reshape(2, 4, 8)
    torch.testing.assert_close(built.model(x), attn.proj(y))


def test_a_plugin_layer_declaring_two_inputs_receives_both():
    import netcfg

    class Gate(netcfg.Node):
        type: Literal["gate"]

        def input_roles(self) -> tuple[str, ...]:
            return ("values", "gates")

    class GateModule(nn.Module):
        def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
            return x * torch.sigmoid(g)

    netcfg.register_layer("gate", args=Gate)(lambda args, xs, ctx: GateModule())
    nodes = {"g": {"type": "linear", "out_features": 8}, "out": {"type": "gate", "inputs": ["input", "g"]}}
    built = build_spec(spec_of(nodes, [2, 8]), device="cpu")
    x = torch.randn(2, 8)
    torch.testing.assert_close(built.model(x), x * torch.sigmoid(built.model.g(x)))
    assert built.visits["out"].in_shapes == [(2, 8), (2, 8)]
    assert build_error({"out": {"type": "gate"}}, [2, 8]).endswith("takes 2 inputs (values, gates), got 1")


def test_an_attention_mask_is_read_from_a_named_input():
    inputs = {"x": {"shape": [2, 5, 16]}, "attention_mask": {"shape": [2, 5], "dtype": "int64", "high": 2}}
    attn = {"type": "attention", "heads": 4, "mask": "key_padding", "inputs": ["x", "attention_mask"]}
    model = {"type": "graph", "nodes": {"attn": attn}}
    built = build_spec(load_spec_data({"netcfg": 1, "input": inputs, "model": model}, "generated"), device="cpu")
    x, keep = torch.randn(2, 5, 16), torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    expected, _ = mha_twin(built.model.attn)(x, x, x, key_padding_mask=keep == 0)
    torch.testing.assert_close(built.model(x, keep), expected)
