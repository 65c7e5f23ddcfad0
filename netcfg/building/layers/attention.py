"""Torch build functions of netcfg/catalogue/attention.py: self- and cross-attention with grouped
key/value heads, rotary positions, masks and a score bias; Swin's relative position bias and
shifted-window mask."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from netcfg.catalogue import attention as d
from netcfg.catalogue.registry import builds


class Attention(nn.Module):
    """Self-attention: q, k, v from one fused projection `qkv` (rows: every query head, then
    every key head, then every value head); cross-attention: q from `q`, k and v from `kv` (rows:
    keys, then values). Output projection `proj`. forward(x, [source], [mask], [score bias])."""

    def __init__(self, a: d.Attention, dim: int, kv_dim: int):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = a.sizes(dim)
        self.cross, self.causal, self.dropout = a.cross, a.causal, a.dropout
        self.rotary, self.rotary_base = a.rotary, a.rotary_base
        self.mask_kind, self.score_bias = a.mask, a.score_bias
        q_rows, kv_rows = self.heads * self.head_dim, 2 * self.kv_heads * self.head_dim
        if a.cross:
            self.q = nn.Linear(dim, q_rows, bias=a.bias)
            self.kv = nn.Linear(kv_dim, kv_rows, bias=a.bias)
        else:
            self.qkv = nn.Linear(dim, q_rows + kv_rows, bias=a.bias)
        self.proj = nn.Linear(q_rows, dim, bias=a.bias)

    def forward(self, x: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        extra = list(extra)
        source = extra.pop(0) if self.cross else x
        mask = extra.pop(0) if self.mask_kind else None
        bias = extra.pop(0) if self.score_bias else None
        *batch, t, _ = x.shape
        q, k, v = self._project(x, source)
        if self.rotary:
            q, k = rotate(q, k, self.rotary_base)
        attn_mask = scores_mask(self.mask_kind, mask, bias, self.causal, len(batch), q, k.shape[-2])
        if len(batch) > 1:  # PyTorch's fused kernels take one batch dimension (the math one needs far more memory)
            q, k, v = (z.flatten(0, len(batch) - 1) for z in (q, k, v))
            attn_mask = _one_batch_dim(attn_mask, batch)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0,
            is_causal=self.causal and attn_mask is None, enable_gqa=self.kv_heads != self.heads,
        )  # fmt: skip
        y = y.unflatten(0, batch) if len(batch) > 1 else y
        return self.proj(y.transpose(-2, -3).reshape(*batch, t, self.heads * self.head_dim))

    def _project(self, x: torch.Tensor, source: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Queries [*N, heads, T, head_dim], keys and values [*N, kv_heads, S, head_dim]."""
        hd, kv = self.head_dim, self.kv_heads * self.head_dim
        if self.cross:
            q, (k, v) = self.q(x), self.kv(source).split([kv, kv], dim=-1)
        else:
            q, k, v = self.qkv(x).split([self.heads * hd, kv, kv], dim=-1)
        return _per_head(q, self.heads, hd), _per_head(k, self.kv_heads, hd), _per_head(v, self.kv_heads, hd)

    def extra_repr(self) -> str:
        return (
            f"heads={self.heads}, kv_heads={self.kv_heads}, head_dim={self.head_dim}, causal={self.causal}, "
            f"rotary={self.rotary}, cross={self.cross}, mask={self.mask_kind}, score_bias={self.score_bias}"
        )


def _per_head(x: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
    """[*N, T, heads * head_dim] -> [*N, heads, T, head_dim]."""
    return x.unflatten(-1, (heads, head_dim)).transpose(-2, -3)


def scores_mask(kind: str | None, mask, bias, causal: bool, batch_rank: int, q: torch.Tensor, keys: int):
    """The one attn_mask for scaled_dot_product_attention made of the mask, the score bias and
    (when either is given) the causal mask: bool when every part is, else floats in q's dtype
    (-inf where a bool part forbids). None when there is neither mask nor bias."""
    parts = [p for p in (_as_scores(kind, mask, batch_rank), bias) if p is not None]
    if not parts:
        return None
    if causal:
        parts.append(torch.ones(q.shape[-2], keys, dtype=torch.bool, device=q.device).tril())
    keep = added = None
    for part in parts:
        if part.dtype == torch.bool:
            keep = part if keep is None else keep & part
        else:
            added = part if added is None else added + part
    if added is None:
        return keep
    added = added.to(q.dtype)
    return added if keep is None else torch.where(keep, added, float("-inf"))


def _one_batch_dim(mask: torch.Tensor | None, batch: list[int]) -> torch.Tensor | None:
    """A mask broadcasting to [*N, heads, T, S] as one broadcasting to [N1 N2 ..., heads, T, S]."""
    if mask is None:
        return None
    mask = mask.reshape((1,) * (len(batch) + 3 - mask.dim()) + tuple(mask.shape))
    rest = mask.shape[len(batch) :]
    if all(size == 1 for size in mask.shape[: len(batch)]):
        return mask.reshape(1, *rest)  # the same for every sample: it still broadcasts
    return mask.expand(*batch, *rest).reshape(-1, *rest)


def _as_scores(kind: str | None, mask, batch_rank: int):
    """A mask in a shape that broadcasts against the scores [*N, heads, T, S]."""
    if mask is None:
        return None
    if kind == "key_padding":  # [*N, S] -> [*N, 1, 1, S]; integers: nonzero = attend
        keep = mask if mask.dtype == torch.bool else mask != 0
        return keep[..., None, None, :]
    return mask.unsqueeze(-3) if mask.dim() == batch_rank + 2 else mask  # [*N, T, S]: the same for every head


def rotate(q: torch.Tensor, k: torch.Tensor, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary position embedding (rotate-half form) on [*N, H, T, D] queries and keys."""
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
    return Attention(a, int(xs[0].shape[-1]), int(xs[1 if a.cross else 0].shape[-1]))


class RelativePositionBias(nn.Module):
    """Swin's bias [heads, T, T] (T = Wh Ww) from the learned table [(2 Wh - 1) (2 Ww - 1), heads]
    read at the fixed index of each pair of window positions (torchvision's layout and names)."""

    def __init__(self, window: tuple[int, int], heads: int):
        super().__init__()
        self.window = window
        self.relative_position_bias_table = nn.Parameter(torch.empty((2 * window[0] - 1) * (2 * window[1] - 1), heads))
        self.register_buffer("relative_position_index", relative_index(*window))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)  # as torchvision's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = self.window[0] * self.window[1]
        bias = self.relative_position_bias_table[self.relative_position_index]  # [T * T, heads]
        return bias.view(t, t, -1).permute(2, 0, 1).contiguous()

    def extra_repr(self) -> str:
        return f"window={list(self.window)}, heads={self.relative_position_bias_table.shape[1]}"


def relative_index(height: int, width: int) -> torch.Tensor:
    """For each pair (i, j) of positions of a window, flattened: the table row of their offset,
    (dy + Wh - 1) (2 Ww - 1) + dx + Ww - 1 with (dy, dx) = position i - position j."""
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    dy = rows[:, None] - rows[None, :] + height - 1
    dx = cols[:, None] - cols[None, :] + width - 1
    return (dy * (2 * width - 1) + dx).flatten()


@builds("relative_position_bias")
def relative_position_bias(a: d.RelativePositionBias, xs: list, ctx) -> nn.Module:
    return RelativePositionBias(a.sizes(), a.heads)


class WindowMask(nn.Module):
    """Swin's shifted-window mask [1, windows, T, T] for a channels-last input [N, H, W, C]."""

    def __init__(self, window: tuple[int, int], shift: tuple[int, int], value: float):
        super().__init__()
        self.window, self.shift, self.value = window, shift, value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (wh, ww), (h, w) = self.window, x.shape[1:3]
        labels = _regions(h, wh, self.shift[0], x.device)[:, None] * 3 + _regions(w, ww, self.shift[1], x.device)
        labels = labels.view(h // wh, wh, w // ww, ww).transpose(1, 2).reshape(-1, wh * ww)  # [windows, T]
        apart = labels[:, None, :] != labels[:, :, None]
        dtype = x.dtype if x.is_floating_point() else torch.float32
        return torch.zeros(apart.shape, dtype=dtype, device=x.device).masked_fill_(apart, self.value)[None]

    def extra_repr(self) -> str:
        return f"window={list(self.window)}, shift={list(self.shift)}, value={self.value}"


def _regions(size: int, window: int, shift: int, device) -> torch.Tensor:
    """The region of each position along one side of the image rolled back by `shift`: 0 before
    the last window, 1 in the last window before the wrapped-around strip, 2 in that strip; one
    region when nothing was rolled."""
    at = torch.arange(size, device=device)
    if shift == 0:
        return torch.zeros_like(at)
    return (at >= size - window).long() + (at >= size - shift).long()


@builds("window_mask")
def window_mask(a: d.WindowMask, xs: list, ctx) -> nn.Module:
    return WindowMask(*a.geometry(tuple(xs[0].shape)), a.value)
