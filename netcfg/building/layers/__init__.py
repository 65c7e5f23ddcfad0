"""Torch build functions, one module per catalogue family (netcfg/catalogue/<family>.py ->
netcfg/building/layers/<family>.py); importing this package attaches them to the registry."""

from netcfg.building.layers import (  # noqa: F401
    activations,
    attention,
    composite,
    conv,
    custom,
    dense,
    embedding,
    learned,
    merges,
    norm,
    pooling,
    recurrent,
    reshape,
)
