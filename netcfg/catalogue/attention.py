"""Multi-head self-attention over [N, T, dim]."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from netcfg.catalogue.base import Layer, Pos, Prob, Shape, last, matmul_flops, widened
from netcfg.catalogue.shapes import ShapeError, check_rank


class Attention(Layer):
    """Multi-head self-attention over [N, T, dim] with fused q/k/v projection `qkv` and output `proj`."""

    type: Literal["attention"]
    heads: Pos
    """Number of query heads."""
    kv_heads: Pos | None = None
    """Number of key/value heads (grouped-query attention); default: heads. Must divide heads."""
    head_dim: Pos | None = None
    """Size of each head; default: input dim / heads."""
    causal: bool = False
    """Each position attends only to itself and earlier positions."""
    bias: bool = True
    """Biases on the q/k/v and output projections."""
    rotary: bool = False
    """Rotary position embeddings on queries and keys."""
    rotary_base: Annotated[float, Field(gt=1.0)] = 10000.0
    """Base of the rotary frequencies."""
    dropout: Prob = 0.0
    """Attention-weight dropout during training."""

    float_only = True

    def sizes(self, dim: int) -> tuple[int, int, int]:
        """(heads, kv_heads, head_dim) for an input of width `dim`."""
        return self.heads, self.kv_heads or self.heads, self.head_dim or max(dim // self.heads, 1)

    def out_shape(self, shapes: list[Shape]) -> Shape:
        shape = shapes[0]
        check_rank(shape, 3, "attention", exact=3)
        heads, kv_heads, head_dim = self.sizes(int(shape[-1]))
        if heads % kv_heads:
            raise ShapeError(f"kv_heads={kv_heads} must divide heads={heads}", key="kv_heads")
        if self.head_dim is None and shape[-1] % heads:
            raise ShapeError(f"input dim {shape[-1]} is not divisible by heads={heads} (or set head_dim)", key="heads")
        if self.rotary and head_dim % 2:
            raise ShapeError(f"rotary positions need an even head_dim, got {head_dim}", key="rotary")
        return shape

    def elements(self, shapes: list[Shape]) -> int:
        dim = last(shapes[0])
        heads, kv, hd = self.sizes(dim)
        weights = dim * (heads + 2 * kv) * hd + heads * hd * dim
        return weights + (((heads + 2 * kv) * hd + dim) if self.bias else 0)

    def flops(self, shapes: list[Shape], out: Shape) -> int:
        n, t, dim = (int(s) for s in shapes[0])
        heads, kv, hd = self.sizes(dim)
        projections = matmul_flops(shapes[0], (heads + 2 * kv) * hd) + matmul_flops((n, t, heads * hd), dim)
        scores_and_mix = 2 * (2 * n * heads * t * t * hd)  # q @ k^T and weights @ v
        return projections + scores_and_mix

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        """The fused q/k/v projection, rotated queries and keys (with their temporaries), keys and
        values repeated to every head (grouped-query), the T x T scores and their softmax as
        PyTorch's reference (math) kernel makes them (the fused kernels need less), and the heads'
        output with its [N, T, heads * head_dim] copy for the output projection."""
        n, t, dim = (int(s) for s in shapes[0])
        heads, kv, hd = self.sizes(dim)
        q, k = n * t * heads * hd, n * t * kv * hd
        rotary = 4 * (q + k) + 4 * t * hd if self.rotary else 0
        grouped = 2 * q if kv != heads else 0
        scores = 2 * n * heads * t * t
        return itemsize * (q + 2 * k + rotary + grouped + 2 * q) + widened(itemsize) * scores
