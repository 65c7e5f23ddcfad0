"""The Python API: build a model from a spec, save it (trained or not) with its spec, load it back."""

from __future__ import annotations

import os
import weakref

from torch import nn

from netcfg.actions.model import build_model
from netcfg.building.builder import Built
from netcfg.errors import CheckpointError, Loc
from netcfg.spec.loader import load_spec
from netcfg.spec.model import Spec

# Modules made by build() or load(), with what built them: save() needs the spec and seed.
_BUILT: weakref.WeakKeyDictionary[nn.Module, Built] = weakref.WeakKeyDictionary()


def build(
    spec_or_path: Spec | str | os.PathLike,
    device: str | None = None,
    seed: int | None = None,
    dtype: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> nn.Module:
    """Build the nn.Module a spec (or spec file) describes, initialized under `seed`."""
    built = build_model(_spec(spec_or_path, overrides), device=device, seed=seed, dtype=dtype)
    _BUILT[built.model] = built
    return built.model


def save(model: nn.Module, path: str | os.PathLike, spec: Spec | str | os.PathLike | None = None) -> None:
    """Save `model`'s current weights (after training, say) with its spec embedded, atomically.

    A module from build() or load() knows its spec; any other module whose parameters and
    buffers are those of `spec`'s model (a hand-written twin) can be saved with `spec=`."""
    from netcfg.actions import checkpoint

    built = _BUILT.get(model)
    if spec is not None or built is None:
        built = _describing(model, spec, path)
    checkpoint.save(built, path)


def load(path: str | os.PathLike, device: str | None = None, spec: Spec | str | os.PathLike | None = None) -> nn.Module:
    """The model a netcfg checkpoint describes (or `spec`'s), with the file's weights."""
    from netcfg.actions import checkpoint

    loaded = checkpoint.load(path, spec=None if spec is None else _spec(spec), device=device)
    _BUILT[loaded.built.model] = loaded.built
    return loaded.built.model


def load_into(model: nn.Module, path: str | os.PathLike) -> None:
    """Copy a checkpoint's tensors into an existing model in place (strict: every name and shape)."""
    from netcfg.actions import checkpoint

    checkpoint.load_into(model, path)


def _spec(spec_or_path: Spec | str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> Spec:
    return spec_or_path if isinstance(spec_or_path, Spec) else load_spec(spec_or_path, overrides)


def _describing(model: nn.Module, spec: Spec | str | os.PathLike | None, path) -> Built:
    """A Built for a module netcfg did not build: the spec's, checked to fit the module."""
    if spec is None:
        raise CheckpointError("this module was not made by netcfg.build or netcfg.load: pass spec=", Loc(str(path)))
    built = build_model(_spec(spec), device="meta")
    want = {k: tuple(v.shape) for k, v in built.model.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if want != have:
        differ = sorted(set(want.items()) ^ set(have.items()))[:5]
        raise CheckpointError(f"the module does not fit the spec's model (first differences: {differ})",
                              Loc(str(path)))  # fmt: skip
    tensor = next(iter(model.state_dict().values()), None)
    built.model = model
    if tensor is not None:
        built.device = tensor.device
    return built
