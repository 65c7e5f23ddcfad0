"""netcfg: neural networks described as YAML data, built into PyTorch modules.

Public API (importing this package does not import torch)::

    spec = netcfg.load_spec("configs/mlp.yaml", overrides=["seed=1"])
    model = netcfg.build(spec, device="cpu")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from netcfg.catalog import Node
from netcfg.errors import BuildError, DeviceError, InputError, NetcfgError, PluginError, SpecError
from netcfg.loader import load_spec, load_spec_data
from netcfg.registry import register_layer
from netcfg.spec import Spec

if TYPE_CHECKING:
    import os

    from torch import nn

__version__ = "0.1.0"

__all__ = [
    "BuildError",
    "DeviceError",
    "InputError",
    "NetcfgError",
    "Node",
    "PluginError",
    "Spec",
    "SpecError",
    "__version__",
    "build",
    "load_spec",
    "load_spec_data",
    "register_layer",
]


def build(
    spec_or_path: Spec | str | os.PathLike,
    device: str | None = None,
    seed: int | None = None,
    dtype: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> nn.Module:
    """Build the nn.Module a spec (or spec file) describes, initialized under `seed`."""
    from netcfg.build import build_spec

    spec = spec_or_path if isinstance(spec_or_path, Spec) else load_spec(spec_or_path, overrides)
    return build_spec(spec, device=device, seed=seed, dtype=dtype).model
