"""Torch build functions of netcfg/catalogue/embedding.py."""

from __future__ import annotations

import torch
from torch import nn

from netcfg.catalogue import embedding as d
from netcfg.catalogue.registry import builds
from netcfg.catalogue.shapes import ShapeError


@builds("embedding")
def embedding(a: d.Embedding, xs: list, ctx) -> nn.Module:
    name, declared = ctx.declared_input(xs[0])
    # Reading a sample input directly: its declared id range is known, so check it now.
    if declared is not None and (declared.low < 0 or declared.high > a.num_embeddings):
        named = ctx.spec.head.named_inputs
        whose = f"the ids of the sample input '{name}'" if named else "the sample input's ids"
        key = f"input.{name}" if named else "input"
        raise ShapeError(
            f"{whose} lie in [{int(declared.low)}, {int(declared.high)}), outside the {a.num_embeddings} rows of this "
            f"embedding (ids must lie in [0, num_embeddings): see {key}.low and high)",
            key="num_embeddings",
        )
    return nn.Embedding(a.num_embeddings, a.embedding_dim, padding_idx=a.padding_idx)


class PositionalEmbedding(nn.Embedding):
    """Learned position vectors for the positions 0..T-1 of an input [N, T, ...]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(x.shape[1], device=self.weight.device)
        return super().forward(positions).unsqueeze(0)


@builds("pos_embedding")
def pos_embedding(a: d.PosEmbedding, xs: list, ctx) -> nn.Module:
    return PositionalEmbedding(a.max_len, a.dim)
