"""`build` and `run` on N processes (DDP, FSDP2, HSDP), and what is checked before they start.

Before anything launches (all in this process, on a meta build: free): the strategy must have
work for every rank (a run's global batch splits evenly over the ranks; under FSDP/HSDP some
parameter splits into as many non-empty parts as a shard group has ranks, else a rank would
hold no parameter at all), and each rank's share of the memory must fit (check_memory).

`run` splits the global batch (the sample inputs, or --input) along dimension 0, rank r taking
part r (torch.chunk), runs each part through the wrapped model in eval mode, and gathers the
outputs on rank 0 in rank order: the one-process run's outputs, up to floating-point rounding
(a matrix product over fewer rows may sum in another order).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from math import ceil

import torch

from netcfg.actions import distributed as dd
from netcfg.actions.model import RunResult, Summary, checksum_all, summarize
from netcfg.building import devices, memory, memplan
from netcfg.building import distributed as d
from netcfg.building.builder import Built, build_spec, named_outputs, sample_inputs
from netcfg.errors import BuildError, InputError, Loc
from netcfg.spec.model import Spec
from netcfg.text import human_bytes

ADAMW_STATE = 2
"""AdamW keeps two moments per parameter: in training a rank holds parameters, gradients and these."""


@dataclass(frozen=True)
class Plan:
    """How the work is spread: `shards` ranks hold one copy of the model between them."""

    strategy: str
    nproc: int
    replicas: int | None = None

    @property
    def shards(self) -> int:
        if self.strategy == "ddp":
            return 1
        return self.nproc // (self.replicas or 1)

    @property
    def flag(self) -> Loc:
        return Loc(f"--nproc {self.nproc}")


def check_replicas(strategy: str, nproc: int, replicas: int | None) -> int | None:
    """HSDP's replica count (R copies of the model, each sharded over nproc / R ranks): --replicas,
    else the number of nodes under an outside multi-node torchrun; on one node it must be given."""
    if strategy != "hsdp":
        if replicas is not None:
            raise InputError(f"applies to --strategy hsdp only, not {strategy}", Loc(f"--replicas {replicas}"))
        return None
    if replicas is None:
        replicas = _nodes()
        if replicas is None:
            raise InputError(
                f"needs --replicas R: R copies of the model, each sharded over {nproc} / R processes (R dividing "
                f"{nproc}); the default, one copy per node, does not apply on one node",
                Loc("--strategy hsdp"),
            )
    if not 1 <= replicas <= nproc or nproc % replicas:
        raise InputError(f"must divide the {nproc} processes (R copies of {nproc} / R ranks)",
                         Loc(f"--replicas {replicas}"))  # fmt: skip
    return replicas


def _nodes() -> int | None:
    """Nodes of an outside torchrun with more than one (WORLD_SIZE / LOCAL_WORLD_SIZE), else None."""
    import os

    if d.launched_world() is None or "LOCAL_WORLD_SIZE" not in os.environ:
        return None
    nodes = int(os.environ["WORLD_SIZE"]) // max(1, int(os.environ["LOCAL_WORLD_SIZE"]))
    return nodes if nodes > 1 else None


# -- refusals before launching


def check_batch(batches: list[int], nproc: int) -> int:
    """The global batch every input shares, split evenly over `nproc` ranks (each rank gets samples)."""
    where = Loc(f"--nproc {nproc}")
    if len(set(batches)) > 1:
        raise InputError(f"the inputs' first dimensions differ ({', '.join(map(str, batches))}): there is no one "
                         "batch to split over the processes", where)  # fmt: skip
    batch = batches[0] if batches else 1
    if batch < nproc:
        raise InputError(f"the batch ({batch}) is smaller than the {nproc} processes: a rank would run no sample; "
                         f"use at most {batch}", where)  # fmt: skip
    if batch % nproc:
        raise InputError(f"the batch ({batch}) must split evenly over {nproc} processes", where)
    return batch


def check_shardable(meta: Built, plan: Plan) -> None:
    """Under FSDP/HSDP each parameter is split along its first dimension over a shard group's
    ranks (torch.chunk: parts of ceil(rows / ranks) rows); refuse when no parameter gives every
    rank a part: the last rank of each group would then hold no parameter at all."""
    if plan.strategy == "ddp" or plan.shards == 1:
        return
    rows = [p.shape[0] if p.dim() else 1 for p in meta.model.parameters()]
    if rows and any(_parts(r, plan.shards) == plan.shards for r in rows):
        return
    most = max((n for n in range(1, plan.shards) if any(_parts(r, n) == n for r in rows)), default=1)
    group = f"each shard group's {plan.shards}" if plan.strategy == "hsdp" else f"{plan.shards}"
    raise InputError(
        f"--strategy {plan.strategy} over {group} processes leaves a rank holding no parameter: no parameter "
        f"splits into {plan.shards} non-empty parts along its first dimension (the largest has {max(rows, default=0)} "
        f"rows); use a shard group of at most {most} processes, or --strategy ddp",
        plan.flag,
    )


def _parts(rows: int, ranks: int) -> int:
    """Non-empty parts torch.chunk cuts `rows` into for `ranks` ranks."""
    return ceil(rows / ceil(rows / ranks))


# -- the memory guard


@dataclass(frozen=True)
class Share:
    """What one rank holds at its peak, in bytes, counted before anything is allocated."""

    state: int
    """Its parameters (training: with gradients and AdamW's moments): 1 / shards of the model's."""
    whole_state: int
    gathered: int
    """FSDP/HSDP: the largest unit and the root's own parameters, gathered whole to run."""
    buffers: int
    activations: int
    batch: int | None
    """Samples per rank the activations were planned for (None: a build, no forward pass)."""
    training: bool = False
    buckets: int = 0
    """DDP: the gradient buckets its reducer allocates when it wraps the model (trainable parameters' size)."""

    @property
    def total(self) -> int:
        return self.state + self.gathered + self.buffers + self.activations + self.buckets


def share(meta: Built, plan: Plan, training: bool = False, rank_spec: Spec | None = None) -> Share:
    """One rank's share, from a meta build; activations planned for `rank_spec` (the spec at the
    per-rank batch) when given."""
    model = meta.model
    params = list(model.parameters())
    # FSDP keeps float32 shards of a float16/bfloat16 model (the master weights) and gathers in its dtype
    stored = 4 if plan.strategy != "ddp" and meta.dtype in d.LOW_PRECISION else meta.dtype.itemsize
    whole = sum(p.numel() for p in params) * stored * (2 + ADAMW_STATE if training else 1)
    gathered = 0 if plan.strategy == "ddp" else _gathered(meta) * meta.dtype.itemsize
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    activations, batch = 0, None
    if rank_spec is not None:
        planned = build_spec(rank_spec, device="meta", memory_check=False)
        activations = memplan.plan(planned.visits, meta.dtype.itemsize, rank_spec.shared).bytes
        batch = next(iter(rank_spec.head.inputs.values())).shape[0]
    trainable = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    buckets = trainable if plan.strategy == "ddp" else 0
    return Share(ceil(whole / plan.shards), whole, gathered, buffers, activations, batch, training, buckets)


def _gathered(meta: Built) -> int:
    """Elements gathered at once: the largest unit, with the root's own (those in no unit)."""
    units = d.unit_paths(meta)
    sizes = [sum(p.numel() for p in meta.model.get_submodule(path).parameters()) for path in units]
    inside = {id(p) for path in units for p in meta.model.get_submodule(path).parameters()}
    root = sum(p.numel() for p in meta.model.parameters() if id(p) not in inside)
    return root + max(sizes, default=0)


def check_memory(plan: Plan, kind: torch.device, mine: Share) -> None:
    """Refuse, in one line naming the figures, a share that does not fit: on CPU the ranks of
    this host share its free memory (the sum must fit), on CUDA each rank has its own GPU."""
    local = plan.nproc if d.launched_world() is None else _local_ranks(plan.nproc)
    if kind.type == "cuda":
        free = [memory.available(torch.device("cuda", i)) for i in range(local)]
        known = [f for f in free if f is not None]
        need, room, subject = mine.total, min(known) if known else None, "each GPU"
    else:
        need, room, subject = mine.total * local, memory.available(kind), _count(local, "rank") + " on this host"
    if room is None or need <= room:
        return
    raise BuildError(
        f"not enough memory on {kind.type} for {_count(plan.nproc, 'process')}: each rank needs about "
        f"{human_bytes(mine.total)} ({describe(mine, plan)}), {human_bytes(need)} for {subject}, "
        f"{human_bytes(room)} are available (pass --no-memory-check)",
        plan.flag,
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}{'es' if noun.endswith('s') else 's'}"


def _local_ranks(nproc: int) -> int:
    import os

    return int(os.environ.get("LOCAL_WORLD_SIZE", nproc))


def describe(mine: Share, plan: Plan) -> str:
    """The figures of a share in words."""
    what = "parameters, gradients and AdamW state" if mine.training else "parameters"
    if plan.shards == 1:
        parts = [f"{what} {human_bytes(mine.state)}, the whole model"]
    else:
        parts = [f"{what} {human_bytes(mine.state)}, 1/{plan.shards} of {human_bytes(mine.whole_state)}",
                 f"the largest unit gathered {human_bytes(mine.gathered)}"]  # fmt: skip
    if mine.buckets:
        parts.append(f"DDP's gradient buckets {human_bytes(mine.buckets)}")
    parts.append(f"buffers {human_bytes(mine.buffers)}")
    if mine.batch is not None:
        parts.append(f"activations {human_bytes(mine.activations)} at batch {mine.batch} per rank")
    return "; ".join(parts)


def prepare(spec: Spec, plan: Plan, device: str, memory_check: bool, rank_spec: Spec | None = None,
            training: bool = False) -> Built:  # fmt: skip
    """Every check before launching, on a meta build (returned: its summary is the model's)."""
    if d.launched_world() is None:
        dd.check_nproc(plan.nproc, device)
    meta = build_spec(spec, device="meta", memory_check=False)
    if plan.strategy != "ddp" and not d.unit_paths(meta):
        raise d.no_units_error(spec, plan.strategy)
    check_shardable(meta, plan)
    if memory_check:
        kind = devices.resolve(device, Loc(f"--device {device}"))[0]
        check_memory(plan, kind, share(meta, plan, training, rank_spec))
    return meta


# -- build


@dataclass
class RankHolding:
    rank: int
    parameter_bytes: int
    """The parameters this rank holds: its shards under FSDP/HSDP, the whole model under DDP."""
    buffer_bytes: int
    peak_memory_bytes: int
    """CUDA: max_memory_allocated; CPU: growth of the rank's peak RSS over the build."""


@dataclass
class DistBuild:
    strategy: str
    nproc: int
    replicas: int | None
    units: int
    """FSDP units sharded apart from the root (0 under DDP)."""
    summary: Summary
    """The model's, as a one-process build reports it (tree, parameters, bytes, dtype)."""
    ranks: list[RankHolding]
    warnings: list[str] = field(default_factory=list)


def build(spec: Spec, plan: Plan, device: str, seed: int | None = None, memory_check: bool = True,
          plugins: tuple[str, ...] = ()) -> DistBuild:  # fmt: skip
    """The model built on the ranks; what each holds. `plugins`: loaded in each rank (already here)."""
    meta = prepare(spec, plan, device, memory_check)
    job = ModelJob("build", spec, plan.strategy, device, seed, replicas=plan.replicas, plugins=plugins)
    ranks = dd.launch(job, plan.nproc)
    if ranks is None:
        return None  # a rank other than 0 under an outside torchrun
    summary = replace(summarize(meta), device=str(ranks[0][1]), device_note=_note(plan))
    return DistBuild(plan.strategy, plan.nproc, plan.replicas, ranks[0][2], summary, [r for r, _, _ in ranks],
                     list(meta.warnings))  # fmt: skip


def _note(plan: Plan) -> str:
    how = f"{plan.replicas} replicas x {plan.shards} shards" if plan.strategy == "hsdp" else plan.strategy
    return f"{plan.nproc} processes, {how}"


def _build_task(job: dd.Job, world: d.World):
    import torch.distributed as dist

    rss_before = dd._peak_rss()
    if world.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(world.device)
    _, model, units = dd._wrapped(job, world, job.spec)
    local = dd._state_bytes(model, None)  # no gradients yet: the parameters alone
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    mine = (RankHolding(world.rank, local, buffers, dd._peak(world, rss_before)), str(world.device), units)
    found: list = [None] * world.size
    dist.all_gather_object(found, mine)
    return found if world.rank == 0 else None


# -- run


@dataclass(frozen=True)
class ModelJob(dd.Job):
    """A job of this module (a rank unpickling it imports the module, which registers its tasks)."""

    inputs: tuple[torch.Tensor, ...] | None = None
    """The global batch (--input), on the CPU; None: the spec's sample inputs."""
    plugins: tuple[str, ...] = ()
    """The plugins the user named (--plugin): each rank loads them before it reads the spec."""

    def __reduce__(self):
        # The spec holds the plugins' layer classes, so a rank must import the plugins before it
        # reads the spec: the job is rebuilt from (plugins, fields), in that order, and rebuilding
        # _Plugins loads them (the launcher's pickling is the only channel; nothing else reads it).
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return _job, (_Plugins(self.plugins), fields)


class _Plugins:
    """The plugins the user named; loaded where the job is rebuilt (in each rank)."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names

    def __reduce__(self):
        return _load_plugins, (self.names,)


def _load_plugins(names: tuple[str, ...]) -> tuple[str, ...]:
    from netcfg.building import plugins

    plugins.load(list(names))
    return names


def _job(_plugins: tuple[str, ...], fields: dict) -> ModelJob:
    return ModelJob(**fields)


def run(spec: Spec, plan: Plan, device: str, seed: int | None = None, inputs: list[torch.Tensor] | None = None,
        memory_check: bool = True, plugins: tuple[str, ...] = ()) -> RunResult | None:  # fmt: skip
    """One eval-mode forward pass of the global batch split over the ranks; the outputs gathered."""
    from netcfg.actions.bench import with_batch
    from netcfg.actions.model import with_inputs

    if d.launched_world() is None:
        dd.check_nproc(plan.nproc, device)  # before the batch is divided by it
    shapes = [list(x.shape) for x in inputs] if inputs is not None else [i.shape for i in spec.head.inputs.values()]
    batch = check_batch([s[0] if s else 1 for s in shapes], plan.nproc)
    given = spec if inputs is None else with_inputs(spec, _shapes(spec, inputs))
    meta = prepare(spec, plan, device, memory_check, with_batch(given, batch // plan.nproc))
    job = ModelJob("run", spec, plan.strategy, device, seed, replicas=plan.replicas,
                   inputs=None if inputs is None else tuple(x.cpu() for x in inputs), plugins=plugins)  # fmt: skip
    found = dd.launch(job, plan.nproc)
    if found is None:
        return None
    outputs, rank_device, shown = found
    summary = replace(summarize(meta), device=rank_device, device_note=_note(plan))
    return RunResult(summary, shown, outputs, checksum_all(outputs), list(meta.warnings))


def _shapes(spec: Spec, xs: list[torch.Tensor]) -> dict:
    return {name: (list(x.shape), None if x.is_floating_point() else devices.dtype_name(x.dtype))
            for name, x in zip(spec.head.inputs, xs, strict=True)}  # fmt: skip


def _run_task(job: ModelJob, world: d.World):
    import torch.distributed as dist

    built, model, _ = dd._wrapped(job, world, job.spec)
    xs = list(job.inputs) if job.inputs is not None else sample_inputs(job.spec, "cpu", built.seed)
    part = [x.chunk(world.size)[world.rank].to(world.device) for x in xs]
    part = [x.to(built.dtype) if x.is_floating_point() else x for x in part]
    model.eval()
    with torch.no_grad():
        outs = named_outputs(model(*part), job.spec.model)
    _check_batched(outs, part[0].shape[0] if part[0].dim() else 1)
    found: list = [None] * world.size
    dist.all_gather_object(found, {name: t.detach().cpu() for name, t in outs.items()})
    if world.rank != 0:
        return None
    outputs = {name: torch.cat([f[name] for f in found]) for name in outs}
    shown = {name: (tuple(x.shape), devices.dtype_name(built.dtype if x.is_floating_point() else x.dtype))
             for name, x in zip(job.spec.head.inputs, xs, strict=True)}  # fmt: skip
    return outputs, str(world.device), shown


def _check_batched(outs: dict[str, torch.Tensor], batch: int) -> None:
    for name, t in outs.items():
        if not t.dim() or t.shape[0] != batch:
            raise InputError(f"output '{name}' {list(t.shape)} does not keep the batch ({batch} per rank) as its "
                             "first dimension: the ranks' outputs cannot be joined; run it on one process",
                             Loc("--nproc"))  # fmt: skip


dd._TASKS["build"] = _build_task
dd._TASKS["run"] = _run_task


def prepare_bench(spec: Spec, plan: Plan, config) -> Built:
    """bench --nproc's checks: each rank runs the spec's batch (or --batch), training or not."""
    from netcfg.actions.bench import with_batch

    rank_spec = with_batch(spec, config.batch)
    return prepare(rank_spec, plan, config.device, config.memory_check, rank_spec, config.mode == "train")
