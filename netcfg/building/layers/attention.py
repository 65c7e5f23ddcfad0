"""Torch build functions of netcfg/catalogue/attention.py: self-attention with grouped key/value
heads and optional rotary positions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from netcfg.catalogue import attention as d
from netcfg.catalogue.registry import builds


class SelfAttention(nn.Module):
    """q, k, v from one fused projection `qkv`; output projection `proj`."""

    def __init__(self, dim: int, heads: int, kv_heads: int, head_dim: int, causal: bool, bias: bool,
                 rotary: bool, rotary_base: float, dropout: float):  # fmt: skip
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.causal, self.rotary, self.rotary_base, self.dropout = causal, rotary, rotary_base, dropout
        self.qkv = nn.Linear(dim, (heads + 2 * kv_heads) * head_dim, bias=bias)
        self.proj = nn.Linear(heads * head_dim, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        hd = self.head_dim
        q, k, v = self.qkv(x).split([self.heads * hd, self.kv_heads * hd, self.kv_heads * hd], dim=-1)
        q = q.view(n, t, self.heads, hd).transpose(1, 2)
        k = k.view(n, t, self.kv_heads, hd).transpose(1, 2)
        v = v.view(n, t, self.kv_heads, hd).transpose(1, 2)
        if self.rotary:
            q, k = rotate(q, k, self.rotary_base)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=self.causal,
            enable_gqa=self.kv_heads != self.heads,
        )  # fmt: skip
        return self.proj(y.transpose(1, 2).reshape(n, t, self.heads * hd))

    def extra_repr(self) -> str:
        return (
            f"heads={self.heads}, kv_heads={self.kv_heads}, head_dim={self.head_dim}, "
            f"causal={self.causal}, rotary={self.rotary}"
        )


def rotate(q: torch.Tensor, k: torch.Tensor, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary position embedding (rotate-half form) on [N, H, T, D] queries and keys."""
    t, d = q.shape[-2], q.shape[-1]
    inv = 1.0 / (base ** (torch.arange(0, d, 2, device=q.device, dtype=torch.float32) / d))
    angles = torch.outer(torch.arange(t, device=q.device, dtype=torch.float32), inv)
    cos = torch.cat([angles.cos(), angles.cos()], dim=-1).to(q.dtype)
    sin = torch.cat([angles.sin(), angles.sin()], dim=-1).to(q.dtype)
    return q * cos + _half_turn(q) * sin, k * cos + _half_turn(k) * sin


def _half_turn(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


@builds("attention")
def attention(a: d.Attention, xs: list, ctx) -> nn.Module:
    dim = int(xs[0].shape[-1])
    heads, kv_heads, head_dim = a.sizes(dim)
    return SelfAttention(dim, heads, kv_heads, head_dim, a.causal, a.bias, a.rotary, a.rotary_base, a.dropout)
