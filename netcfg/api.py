"""The Python API: build a model from a spec, save it (trained or not) with its spec, load it back."""

from __future__ import annotations

import os

from torch import nn

from netcfg.actions.model import build_model
from netcfg.errors import CheckpointError, Loc
from netcfg.spec.loader import load_spec
from netcfg.spec.model import Spec


def build(
    spec_or_path: Spec | str | os.PathLike,
    device: str | None = None,
    seed: int | None = None,
    dtype: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> nn.Module:
    """Build the nn.Module a spec (or spec file) describes, initialized under `seed`."""
    from netcfg.actions import checkpoint

    built = build_model(_spec(spec_or_path, overrides), device=device, seed=seed, dtype=dtype)
    checkpoint.mark(built)  # on the module: a deep copy or a torch.compile wrapper still knows its spec
    return built.model


def save(
    model: nn.Module,
    path: str | os.PathLike,
    spec: Spec | str | os.PathLike | None = None,
    max_shard_size: int | None = None,
) -> None:
    """Save `model`'s current weights (after training, say) with its spec embedded, atomically;
    with `max_shard_size` (bytes), as shards and an index (`path`: NAME.safetensors.index.json).

    A module from build() or load() knows its spec (so do its deep copies and its torch.compile
    wrapper); any other module whose parameters and buffers are those of `spec`'s model (a
    hand-written twin) can be saved with `spec=`. A model changed since it was built is saved
    only if load() can rebuild it exactly: a cast of the whole model (model.to(torch.bfloat16))
    is recorded in the spec, another device needs nothing; a replaced layer, a new or broken tie,
    or another shape is refused, in one line saying what differs, and no file is written."""
    from netcfg.actions import checkpoint

    where = Loc(str(path))
    made = checkpoint.made_by(model)
    if spec is not None:
        built = checkpoint.as_built(model, _spec(spec), None, where, same_modules=False)
    elif made is None:
        raise CheckpointError("this module was not made by netcfg.build or netcfg.load: pass spec=", where)
    else:
        built = checkpoint.as_built(model, made.spec, made.seed, where)
    checkpoint.save(built, path, max_shard_size=max_shard_size)


def load(path: str | os.PathLike, device: str | None = None, spec: Spec | str | os.PathLike | None = None) -> nn.Module:
    """The model a netcfg checkpoint (a file, or a sharded one's index) describes (or `spec`'s),
    with the file's weights."""
    from netcfg.actions import checkpoint

    loaded = checkpoint.load(path, spec=None if spec is None else _spec(spec), device=device)
    checkpoint.mark(loaded.built)
    return loaded.built.model


def load_into(model: nn.Module, path: str | os.PathLike) -> None:
    """Copy a checkpoint's tensors into an existing model in place (strict: every name and shape)."""
    from netcfg.actions import checkpoint

    checkpoint.load_into(checkpoint.unwrap(model), path)


def _spec(spec_or_path: Spec | str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> Spec:
    return spec_or_path if isinstance(spec_or_path, Spec) else load_spec(spec_or_path, overrides)
