"""Data-parallel (DDP) and fully sharded (FSDP2) models from a spec, with torch.distributed.

Units. FSDP2 shards a model unit by unit (`fully_shard` on each, then on the root): a unit's
parameters are gathered just before it runs and freed after. The spec knows its natural
units: each `repeat` copy and each block-template instance (recorded by the expansion in
`Spec.units`); a `shard:` section can name others (a template's name, a layer type, module
path globs). A unit whose parameters are also used outside it (a shared module, a tie) is
left to the enclosing unit: FSDP2 needs a tensor to live in one unit.

Sharded materialization. The model is built on meta (free), sharded there, moved with
`to_empty`, then initialized exactly as a one-process build would be: the build is replayed
on the target device under the same seed, one layer at a time (the same constructors in the
same order draw the same numbers), each layer's tensors are cut to this rank's shard
(`distribute_tensor(..., src_data_rank=None)`: every rank drew the same full tensor, so no
communication) and the layer is dropped before the next is drawn; the init rules then fill
one full temporary per parameter, in the one-process order, and keep the shard. A rank holds
the shards plus one layer (or one parameter) at a time, never the whole model.

Precision. With a float16/bfloat16 spec the shards stay float32 (the master weights) and
FSDP2 computes in the spec's dtype and reduces gradients in float32 (MixedPrecisionPolicy);
a float32 or float64 spec runs in its own dtype.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from netcfg.building import builder as b
from netcfg.building import devices, init
from netcfg.catalogue.registry import REGISTRY
from netcfg.errors import BuildError, InputError, Loc
from netcfg.spec.model import ShardSpec, Spec

BACKENDS = {"cpu": "gloo", "cuda": "nccl"}
STRATEGIES = ("ddp", "fsdp", "hsdp")
DEFAULT_TIMEOUT_S = 120.0
"""Every collective's limit: a rank that stops answering fails the run instead of hanging it."""
LOW_PRECISION = (torch.float16, torch.bfloat16)


@dataclass
class World:
    """This process's place in the process group."""

    rank: int
    size: int
    local_rank: int
    device: torch.device
    backend: str
    mesh: object  # torch.distributed.device_mesh.DeviceMesh


def launched_world() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when a launcher (torchrun, netcfg --nproc) started this process."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return rank, size, int(os.environ.get("LOCAL_RANK", rank))


def backend_for(device_type: str, where: Loc) -> str:
    """The collective backend for a device type, checked present in this torch build."""
    if not dist.is_available():
        raise InputError("this torch build has no torch.distributed", where)
    backend = BACKENDS.get(device_type)
    if backend is None:
        raise InputError(f"no distributed backend for {device_type} (cpu: gloo, cuda: nccl)", where)
    if not dist.is_backend_available(backend):
        raise InputError(f"the {backend} backend ({device_type}) is not available in this torch build", where)
    return backend


def join(device: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> World:
    """Join the process group the launcher set up (env://), one device per rank."""
    from torch.distributed.device_mesh import init_device_mesh

    placed = launched_world()
    if placed is None:
        raise InputError("not started by a launcher: RANK and WORLD_SIZE are unset", Loc("--nproc"))
    rank, size, local = placed
    where = Loc(f"--device {device}")
    kind = devices.resolve(device, where)[0].type
    backend = backend_for(kind, where)
    target = torch.device("cuda", local) if kind == "cuda" else torch.device(kind)
    if kind == "cuda":
        torch.cuda.set_device(target)
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    mesh = init_device_mesh(kind, (size,))
    return World(rank, size, local, target, backend, mesh)


def leave() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# -- units


def unit_paths(built: b.Built) -> list[str]:
    """Module paths of the units to shard, innermost first (FSDP2 wraps children before parents)."""
    spec = built.spec
    shard = spec.head.shard or ShardSpec()
    found: list[str] = []
    for i, entry in enumerate(shard.units):
        matched = [path for path, visit in built.visits.items() if path and _matches(entry, path, visit, spec)]
        if not matched and spec.head.shard is not None:
            raise BuildError(_names_nothing(entry, built), spec.loc(("shard", "units", i)))
        found += [p for p in matched if p not in found]
    order = {path: i for i, path in enumerate(built.visits)}  # building finished children first
    return _whole(built.model, sorted(found, key=order.__getitem__))


def _matches(entry: str, path: str, visit: b.Visit, spec: Spec) -> bool:
    if entry in ("repeat", "block") or entry in spec.head.blocks:
        return entry in spec.units.get(visit.node._path, [])
    if entry in REGISTRY.entries:
        return visit.type == entry
    return fnmatch.fnmatchcase(path, entry)


def _names_nothing(entry: str, built: b.Built) -> str:
    from netcfg.suggest import suggest

    kinds = ["repeat", "block", *built.spec.head.blocks, *sorted({v.type for v in built.visits.values()})]
    hint = suggest(entry, kinds + [p for p in built.visits if p])
    return (f"shard unit '{entry}' names nothing in this model: no repeat copy, block instance, layer type or "
            f"module path matches{hint}")  # fmt: skip


def _whole(model: nn.Module, paths: list[str]) -> list[str]:
    """The units whose parameters no module outside them uses (the others fall to the enclosing unit)."""
    uses: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        uses[id(p)] = uses.get(id(p), 0) + 1
    kept = []
    for path in paths:
        inside: dict[int, int] = {}
        for _, p in model.get_submodule(path).named_parameters(remove_duplicate=False):
            inside[id(p)] = inside.get(id(p), 0) + 1
        if all(uses[key] == count for key, count in inside.items()):
            kept.append(path)
    return kept


def no_units_error(spec: Spec, strategy: str = "fsdp") -> InputError:
    return InputError(
        f"--strategy {strategy} needs units to shard and this model has none (no repeat and no block template); "
        "name some in a shard: section (shard: {units: [linear]}), or use --strategy ddp",
        Loc(f"--strategy {strategy}"),
    )


def shard_mesh(world: World, replicas: int | None):
    """The mesh FSDP2 shards over: all ranks (fsdp), or HSDP's 2-D (replicate, shard) mesh,
    `replicas` copies of the model each sharded over size // replicas ranks."""
    if replicas is None:
        return world.mesh
    from torch.distributed.device_mesh import init_device_mesh

    shape = (replicas, world.size // replicas)
    return init_device_mesh(world.device.type, shape, mesh_dim_names=("replicate", "shard"))


# -- wrapping


def data_parallel(built: b.Built, world: World) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    _checkpoint_units(built)
    ids = [world.device.index] if world.device.type == "cuda" else None
    return DistributedDataParallel(built.model, device_ids=ids)


def _checkpoint_units(built: b.Built) -> list[str]:
    """Activation checkpointing on each unit when the spec's shard: section asks for it."""
    shard = built.spec.head.shard
    if shard is None or not shard.checkpoint:
        return []
    from torch.distributed._composable import checkpoint

    units = unit_paths(built)
    for path in units:
        checkpoint(built.model.get_submodule(path))
    return units


def precision(dtype: torch.dtype):
    """FSDP2's policy for the spec's dtype: compute in it, keep float32 shards, reduce in float32."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if dtype in LOW_PRECISION:
        return MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def build_sharded(
    spec: Spec, world: World, seed: int | None = None, replicas: int | None = None
) -> tuple[b.Built, list[str]]:
    """The model as FSDP2 shards, initialized exactly as a one-process build (see the module's doc);
    with `replicas`, HSDP: sharded within each of `replicas` groups, replicated across them."""
    from torch.distributed.fsdp import fully_shard

    strategy = "fsdp" if replicas is None else "hsdp"
    meta = b.build_spec(spec, device="meta", seed=seed, memory_check=False)
    units = unit_paths(meta)
    if not units:
        raise no_units_error(spec, strategy)
    mesh = shard_mesh(world, replicas)
    model = meta.model.float() if meta.dtype in LOW_PRECISION else meta.model
    _checkpoint_units(meta)
    policy = precision(meta.dtype)
    for path in units:
        fully_shard(model.get_submodule(path), mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    model.to_empty(device=world.device)
    _replay_init(spec, model, world.device, meta.seed, meta.init_rules)
    built = b.Built(model, spec, world.device, f"rank {world.rank} of {world.size}", meta.dtype, meta.seed,
                    meta.visits, meta.init_rules, meta.warnings, outputs=meta.outputs)  # fmt: skip
    return built, units


def _replay_init(spec: Spec, model: nn.Module, device: torch.device, seed: int, chosen: dict[str, int]) -> None:
    params = dict(model.named_parameters(remove_duplicate=False))
    buffers = dict(model.named_buffers(remove_duplicate=False))
    later_ties = {path for group in spec.head.ties for path in group[1:]}  # a tie keeps its first path's tensor

    def keep_shards(path: str, module: nn.Module, leaf: bool) -> None:
        prefix = f"{path}." if path else ""
        with torch.no_grad():
            for name, t in module.named_parameters(recurse=leaf):
                if prefix + name not in later_ties and not t.is_meta:  # meta: a shared module, already kept
                    _put(params[prefix + name], t)
            for name, t in module.named_buffers(recurse=leaf):
                if not t.is_meta:
                    buffers[prefix + name].copy_(t)
        if leaf:
            module.to("meta")  # its full tensors are no longer needed

    replay = b.Builder(spec, REGISTRY, device)
    replay.on_built = keep_shards
    with b._seeded(seed, device), b._no_gc():
        replay.build_model()
        rules = spec.head.init
        with torch.no_grad():
            for name, index in chosen.items():  # the one-process order: after every constructor's draws
                full = torch.empty(params[name].shape, dtype=torch.float32, device=device)
                init.fill(full, rules[index].init)
                _put(params[name], full)


def _put(param: torch.Tensor, full: torch.Tensor) -> None:
    """Copy this rank's part of `full` into `param` (a DTensor shard, or a whole tensor)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(param, DTensor):
        part = distribute_tensor(full.to(param.dtype), param.device_mesh, param.placements, src_data_rank=None)
        param.to_local().copy_(part.to_local())
    else:
        param.copy_(full)


def full_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole state dict, gathered (a collective: every rank calls it), on the CPU of rank 0."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
