"""The one-call build API."""

from __future__ import annotations

import os

from torch import nn

from netcfg.actions.model import build_model
from netcfg.loader import load_spec
from netcfg.spec import Spec


def build(
    spec_or_path: Spec | str | os.PathLike,
    device: str | None = None,
    seed: int | None = None,
    dtype: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> nn.Module:
    """Build the nn.Module a spec (or spec file) describes, initialized under `seed`."""
    spec = spec_or_path if isinstance(spec_or_path, Spec) else load_spec(spec_or_path, overrides)
    return build_model(spec, device=device, seed=seed, dtype=dtype).model
