"""Sharded save and load: `netcfg save/load --nproc N`, through torch.distributed.checkpoint.

Save: each rank builds the model (FSDP2 shards, initialized exactly as one process would, or
the whole model under DDP) and DCP writes it with netcfg's StorageWriter (netcfg.io.dcp_storage):
the planner gives each chunk to one rank, each rank writes its chunks at their offsets in the
file(s) rank 0 created, rank 0 commits. The result is the file (or index and shards) a
one-process `netcfg save` writes; no rank ever holds the whole model.

Load: the headers are checked against the spec's model here, before any process starts (the
one-process checks and messages); each rank then builds the model on meta, shards it (FSDP2, in
the file's dtype: the loaded shards are the file's values), moves it to its device empty and has
DCP fill it, reading only the byte ranges of its own shards. No initialization is computed.

A failed save leaves the previous checkpoint as it was: a rank's error aborts the save (rank 0
removes the temporaries); a rank killed takes the others down (the launcher), and the
temporaries, whose writer is gone, are removed here (netcfg.io.temporaries.sweep).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from netcfg.actions import distributed as dd
from netcfg.actions.checkpoint import (
    Saved,
    _restore_frozen,
    _tie_conflicts,
    alias_groups,
    compare,
    embedded_spec,
    saved,
    saved_state,
)
from netcfg.actions.model import Summary, checksum_all, forward, read_inputs, summarize
from netcfg.building import distributed as d
from netcfg.building import ties
from netcfg.building.builder import Built, build_spec
from netcfg.errors import BuildError, CheckpointError, Diagnostic, Loc, NetcfgError
from netcfg.io import temporaries
from netcfg.io.reading import open_checkpoint
from netcfg.io.shards import read_checkpoint
from netcfg.io.tensor_files import check_index_output, check_output, shard_folder
from netcfg.spec.model import Spec


@dataclass(frozen=True)
class CheckpointJob(dd.Job):
    """A Job with the checkpoint's path and what to do with it."""

    path: str = ""
    max_shard_size: int | None = None
    check: bool = False
    input: str | None = None
    gather: bool = False


@dataclass
class DistLoaded:
    path: str
    nproc: int
    strategy: str
    units: int
    """FSDP units sharded apart from the root (0 under DDP)."""
    tensors: int
    """File tensors, every one loaded."""
    summary: Summary
    checksum: str | None = None
    nonfinite: dict[str, int] = field(default_factory=dict)
    """Tensor name -> count of NaN/Inf values (with check)."""
    frozen: list[str] = field(default_factory=list)
    """Parameters loaded frozen (as saved)."""
    state: dict[str, torch.Tensor] | None = None
    """With gather: the whole state dict as loaded, gathered on the CPU of rank 0."""


# ---------------------------------------------------------------- what the user calls


def save(
    spec: Spec, path: str | os.PathLike, nproc: int, strategy: str = "fsdp", seed: int | None = None,
    max_shard_size: int | None = None, device: str | None = None,
) -> Saved | None:  # fmt: skip
    """Build `spec` on `nproc` processes and write it as a one-process save would. None on the
    ranks other than 0 under an outside torchrun."""
    (check_output if max_shard_size is None else check_index_output)(path, "-o")
    if d.launched_world() is None:
        dd.check_nproc(nproc, device or "cpu")
    if strategy != "ddp" and not d.unit_paths(build_spec(spec, device="meta")):  # before any process starts
        raise d.no_units_error(spec, strategy)
    job = CheckpointJob("save", spec, strategy, device or "cpu", seed, path=os.path.abspath(path),
                        max_shard_size=max_shard_size)  # fmt: skip
    try:
        done = dd.launch(job, nproc)
    except BaseException:
        # A killed rank's temporaries (their writers are gone): beside the file (a link's target) and the shards.
        for folder in {str(Path(os.path.realpath(path)).parent), str(shard_folder(path))}:
            temporaries.sweep(folder)
        raise
    if done is None:
        return None
    parameters, groups, meta, shards, warnings = done
    return replace(saved(path, parameters, groups, meta, shards), warnings=warnings)


def load(
    path: str | os.PathLike, nproc: int, strategy: str = "fsdp", spec: Spec | None = None,
    device: str | None = None, check: bool = False, input: str | None = None, gather: bool = False,
) -> DistLoaded | None:  # fmt: skip
    """Load a checkpoint into a model sharded over `nproc` processes (checked here first, as
    actions.checkpoint.load checks it); with `check`, the checksum of its outputs for the sample
    input (or the tensors of `input`); with `gather`, the whole loaded state. None on the ranks
    other than 0 under an outside torchrun."""
    header = read_checkpoint(path)
    spec = spec or embedded_spec(header)
    skeleton = build_spec(spec, device="meta")
    problems = compare(skeleton.model, header) or _stored_twice(skeleton, path)
    if problems:
        raise CheckpointError([Diagnostic(Loc(header.path), p) for p in problems])
    if check and input is not None:
        read_inputs(input, spec)  # a missing file or tensor: refused here, not by every rank once started
    job = CheckpointJob("load", spec, strategy, device or "cpu", path=os.path.abspath(path), check=check,
                        input=None if input is None else os.path.abspath(input), gather=gather)  # fmt: skip
    loaded = dd.launch(job, nproc)
    if loaded is not None:
        loaded.path = str(path)
    return loaded


def _stored_twice(skeleton: Built, path) -> list[str]:
    """A tied tensor the file holds under several names must hold the same values under each
    (one-process load's check; a rank reads one of them)."""
    with open_checkpoint(path) as source:
        twice = [g for g in alias_groups(skeleton.model) if sum(n in source.tensors for n in g) > 1]
        if not twice:
            return []
        names = [n for g in twice for n in g if n in source.tensors]
        return _tie_conflicts(twice, {n: source.get_tensor(n) for n in names})


# ---------------------------------------------------------------- what each rank runs


def _save(job: CheckpointJob, world: d.World):
    """This rank's part of the save; rank 0 answers (model, tie groups, metadata, shard names)."""
    import torch.distributed.checkpoint as dcp

    from netcfg.io.dcp_storage import SafetensorsWriter

    if job.strategy == "fsdp":
        built, _ = dd.build_sharded(job.spec, world, job.seed)  # with its pretrained: checkpoints
    else:
        from netcfg.actions.model import build_model

        built = build_model(job.spec, device=str(world.device), seed=job.seed)
    groups, tensors, meta = saved_state(built)
    writer = SafetensorsWriter(job.path, meta, list(tensors), job.max_shard_size)
    try:
        with _unwrapped():
            dcp.save(tensors, storage_writer=writer)
    finally:
        writer.abort()  # nothing once committed
    if world.rank:
        return None
    parameters = sum(p.numel() for p in built.model.parameters())  # a DTensor counts its whole tensor
    return parameters, groups, meta, writer.sharded.names if writer.sharded else [], list(built.warnings)


def _load(job: CheckpointJob, world: d.World):
    import torch.distributed.checkpoint as dcp

    from netcfg.io.dcp_storage import SafetensorsReader

    header = read_checkpoint(job.path)
    meta = build_spec(job.spec, device="meta", memory_check=False)
    units = _sharded_empty(meta, world, job.strategy)
    model = meta.model
    state = model.state_dict()
    wanted = {next(n for n in g if n in header.tensors): state[g[0]] for g in alias_groups(model)}
    with _unwrapped():
        dcp.load(wanted, storage_reader=SafetensorsReader(header))
    _restore_frozen(model, header)
    built = Built(model, job.spec, world.device, f"rank {world.rank} of {world.size}", meta.dtype, meta.seed,
                  meta.visits, meta.init_rules, meta.warnings)  # fmt: skip
    nonfinite = _nonfinite(wanted, world) if job.check else {}
    checksum = _checksum(built, job.input) if job.check else None
    state = d.full_state(model) if job.gather else None
    if world.rank:
        return None
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    return DistLoaded(job.path, world.size, job.strategy, units, len(header.tensors), summarize(built), checksum,
                      nonfinite, frozen, state)  # fmt: skip


def _sharded_empty(meta: Built, world: d.World, strategy: str) -> int:
    """The meta model sharded (fsdp) or whole (ddp), on this rank's device, uninitialized: its units."""
    model = meta.model
    units = []
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        units = _units(meta)
        for path in units:
            fully_shard(model.get_submodule(path), mesh=world.mesh)
        fully_shard(model, mesh=world.mesh)
    tied = [g for g in alias_groups(model) if len(g) > 1]
    model.to_empty(device=world.device)
    if strategy != "fsdp":  # to_empty gives each path its own tensor: tie them again
        params = dict(model.named_parameters(remove_duplicate=False))
        ties.tie(model, [g for g in tied if all(n in params for n in g)])
    return len(units)


def _units(meta: Built) -> list[str]:
    """The spec's units (its shard: section's); else each layer holding parameters of its own: a
    checkpoint's embedded spec is expanded, its repeat copies and block instances no longer marked."""
    try:
        units = d.unit_paths(meta)
    except BuildError:  # a shard: entry naming a repeat or a block, which the expanded spec has not
        units = []
    if units:
        return units
    model = meta.model
    own = [p for p, m in model.named_modules() if p and next(m.parameters(recurse=False), None) is not None]
    return d._whole(model, own[::-1])  # children before their parents, as fully_shard needs


def _nonfinite(state: dict[str, torch.Tensor], world: d.World) -> dict[str, int]:
    """NaN/Inf values per tensor, summed over the ranks' shards (a collective)."""
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    def local(t: torch.Tensor) -> int:
        if not isinstance(t, DTensor) and world.rank:
            return 0  # a whole tensor on every rank: counted once
        return int((~torch.isfinite(t.to_local() if isinstance(t, DTensor) else t)).sum())

    names = [n for n, t in state.items() if t.is_floating_point()]
    counts = torch.tensor([local(state[n]) for n in names] or [0], dtype=torch.int64, device=world.device)
    dist.all_reduce(counts)
    return {n: int(c) for n, c in zip(names, counts.tolist(), strict=False) if c}


def _checksum(built: Built, input: str | None) -> str:
    """The checksum of the sharded model's outputs (every rank runs the same input: FSDP gathers
    each unit's weights as it runs)."""
    xs = None if input is None else read_inputs(input, built.spec)
    return checksum_all(forward(built, xs, None if input is None else Loc(f"--input {input}"))[1])


class _unwrapped:
    """DCP reports a rank's failure as CheckpointException on every rank: raise the netcfg error
    inside it (the lowest rank's), or the first other one, so the run fails in one line."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, trace):
        from torch.distributed.checkpoint.api import CheckpointException

        if not isinstance(exc, CheckpointException):
            return False
        failures = [exc.failures[rank][0] for rank in sorted(exc.failures)]
        ours = [f for f in failures if isinstance(f, NetcfgError)]
        raise (ours or failures)[0] from None


dd._TASKS["save"] = _save
dd._TASKS["load"] = _load
