"""Embeddings: learned vectors looked up by token id or by position."""

from __future__ import annotations

from typing import Literal

from netcfg.catalogue.base import BUILD_DTYPE, SMALL, Layer, NonNeg, Pos, Shape, is_float
from netcfg.catalogue.shapes import ShapeError, check_rank


class Embedding(Layer):
    """Token embedding: integer ids [..] -> vectors [.., embedding_dim] (torch.nn.Embedding)."""

    type: Literal["embedding"]
    num_embeddings: Pos
    """Vocabulary size; input ids must lie in [0, num_embeddings)."""
    embedding_dim: Pos
    """Size of each embedding vector."""
    padding_idx: NonNeg | None = None
    """Id whose vector is zero and receives no gradient."""

    def out_shape(self, shapes: list[Shape]) -> Shape:
        if self.padding_idx is not None and self.padding_idx >= self.num_embeddings:
            raise ShapeError(
                f"padding_idx {self.padding_idx} is not below num_embeddings {self.num_embeddings}", key="padding_idx"
            )
        return (*shapes[0], self.embedding_dim)

    def out_dtype(self, dtypes: list[str]) -> str:
        if is_float(dtypes[0]):
            raise ShapeError(
                f"embedding needs integer ids, its input is {dtypes[0]} "
                "(for token inputs declare `input: {shape: [...], dtype: int64, high: VOCAB}`)"
            )
        return BUILD_DTYPE

    def elements(self, shapes: list[Shape]) -> int:
        return self.num_embeddings * self.embedding_dim

    def flops(self, shapes: list[Shape], out: Shape) -> int:
        return 0


class PosEmbedding(Layer):
    """Learned positional embedding: input [N, T, ...] -> position vectors [1, T, dim] (weight [max_len, dim])."""

    type: Literal["pos_embedding"]
    max_len: Pos
    """Longest sequence supported."""
    dim: Pos
    """Size of each position vector."""

    def out_shape(self, shapes: list[Shape]) -> Shape:
        shape = shapes[0]
        check_rank(shape, 2, "pos_embedding")
        if shape[1] > self.max_len:
            raise ShapeError(f"input length {shape[1]} exceeds max_len {self.max_len}", key="max_len")
        return (1, shape[1], self.dim)

    def out_dtype(self, dtypes: list[str]) -> str:
        return BUILD_DTYPE  # reads only the input's length

    def elements(self, shapes: list[Shape]) -> int:
        return self.max_len * self.dim

    def flops(self, shapes: list[Shape], out: Shape) -> int:
        return 0

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        return 8 * int(shapes[0][1]) + SMALL  # the positions 0..T-1 (int64)
