"""netcfg build/run --nproc N --strategy ddp|fsdp|hsdp: the model built, or run, on N processes."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from netcfg.cli._common import is_checkpoint, load
from netcfg.cli.bench_dist import Strategy
from netcfg.errors import InputError, Loc
from netcfg.text import human_bytes, units_text

NprocOpt = Annotated[
    Optional[str],
    typer.Option("--nproc", metavar="N",
                 help="Build (run) on N processes (elastic launcher, gloo on CPU, NCCL on CUDA); see --strategy."),
]  # fmt: skip


def wanted(nproc: str | None, strategy: Strategy | None, replicas: int | None) -> bool:
    """Whether to go distributed (--replicas alone too: then refused, it needs --strategy hsdp)."""
    from netcfg.cli.bench_dist import wanted as bench_wanted

    return bench_wanted(nproc, strategy) or replicas is not None


def plan(nproc: str | None, strategy: Strategy | None, replicas: int | None):
    """The launch plan of the flags: N processes (under torchrun: its world size), the strategy
    (ddp by default), HSDP's replica count."""
    from netcfg.actions import dist_model
    from netcfg.actions.distributed import MAX_PROCESSES
    from netcfg.building.distributed import launched_world
    from netcfg.numbers import parse_int

    chosen = (strategy or Strategy.ddp).value
    if replicas is not None and strategy is not Strategy.hsdp:
        raise InputError("applies to --strategy hsdp only (R copies of the model, each sharded)",
                         Loc(f"--replicas {replicas}"))  # fmt: skip
    placed = launched_world()
    if nproc is not None:
        count = parse_int(nproc, Loc(f"--nproc {nproc}"), 1, MAX_PROCESSES)
    elif placed is not None:
        count = placed[1]
    else:
        raise InputError("needs --nproc N (the number of processes)", Loc(f"--strategy {chosen}"))
    return dist_model.Plan(chosen, count, dist_model.check_replicas(chosen, count, replicas))


def _plugins(names: list[str] | None) -> tuple[str, ...]:
    """The plugins as each rank names them: a .py file by its absolute path."""
    from pathlib import Path

    return tuple(str(Path(n).resolve()) if n.endswith(".py") else n for n in names or ())


def build(path, set_, plugin, nproc, strategy, replicas, device, seed, memory_check):
    """The distributed build's report (None on the ranks other than 0 under torchrun)."""
    from netcfg.actions import dist_model

    spec = load(path, set_, plugin)
    how = plan(nproc, strategy, replicas)
    return dist_model.build(spec, how, device or spec.head.device, seed, memory_check, _plugins(plugin))


def rank_lines(result) -> list[str]:
    """The units, and what each rank holds."""
    lines = [f"{result.strategy}: {units_text(result.units)}"] if result.units else []
    return lines + [
        f"rank {r.rank}: parameters {human_bytes(r.parameter_bytes)}, buffers {human_bytes(r.buffer_bytes)}, "
        f"peak memory {human_bytes(r.peak_memory_bytes)}"
        for r in result.ranks
    ]


def run(path, set_, plugin, nproc, strategy, replicas, device, seed, memory_check, input):
    """(spec, the distributed run's result: None on the ranks other than 0 under torchrun)."""
    from netcfg.actions import dist_model
    from netcfg.actions.model import read_inputs

    if is_checkpoint(path):
        raise InputError("does not apply to a checkpoint: run its spec on N processes", Loc("--nproc"))
    spec = load(path, set_, plugin)
    how = plan(nproc, strategy, replicas)
    xs = read_inputs(str(input), spec) if input is not None else None
    return spec, dist_model.run(spec, how, device or spec.head.device, seed, xs, memory_check, _plugins(plugin))
