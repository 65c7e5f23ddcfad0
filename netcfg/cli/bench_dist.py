"""netcfg bench --nproc N --strategy ddp|fsdp: the step on N processes, against one process."""

from __future__ import annotations

import json
from enum import Enum
from typing import Annotated, Optional

import typer

from netcfg.cli._common import Format, integer, out, refuse_flags
from netcfg.errors import Loc
from netcfg.numbers import parse_int_list
from netcfg.text import human_bytes, units_text


class Strategy(str, Enum):
    ddp = "ddp"
    fsdp = "fsdp"
    hsdp = "hsdp"


NprocOpt = Annotated[
    Optional[str],
    typer.Option("--nproc", metavar="N[,N...]",
                 help="Processes (elastic launcher, gloo on CPU, NCCL on CUDA); a 1-process run is added "
                      "for the scaling efficiency."),
]  # fmt: skip
StrategyOpt = Annotated[
    Optional[Strategy],
    typer.Option("--strategy", help="ddp (whole model per process), fsdp (sharded by the spec's blocks) or hsdp "
                                     "(--replicas copies, each sharded)."),
]  # fmt: skip
ReplicasOpt = Annotated[
    Optional[int],
    typer.Option("--replicas", metavar="R",
                 help="--strategy hsdp: R copies of the model, each sharded over N / R processes (R divides N; "
                      "default: one per node, so on one node give it).",
                 parser=integer("--replicas", 1, 64)),  # 64: actions.distributed.MAX_PROCESSES (imports torch)
]  # fmt: skip


def wanted(nproc: str | None, strategy: Strategy | None) -> bool:
    from netcfg.building.distributed import launched_world

    return nproc is not None or strategy is not None or launched_world() is not None


def parse_nproc(text: str | None) -> list[int]:
    """'2' -> [1, 2] (the baseline added); '1,2,4' as given. Under torchrun: its world size."""
    from netcfg.actions.distributed import MAX_PROCESSES
    from netcfg.building.distributed import launched_world

    placed = launched_world()
    if placed is not None:
        return [placed[1]] if text is None else parse_int_list(text, Loc(f"--nproc {text}"), 1, MAX_PROCESSES)
    counts = parse_int_list(text or "1", Loc(f"--nproc {text}"), 1, MAX_PROCESSES)
    return counts if 1 in counts else [1, *counts]


def run(spec, configs: list, nproc: str | None, strategy: Strategy | None, format: Format, given: dict,
        replicas: int | None = None) -> None:  # fmt: skip
    from netcfg.actions import dist_model
    from netcfg.actions import distributed as actions

    refuse_flags(given, "does not apply to --nproc/--strategy (one device type, the spec's batch per process)")
    config = configs[0]
    counts = parse_nproc(nproc)
    chosen = (strategy or Strategy.ddp).value
    one = chosen == "hsdp"  # the 1-process baseline of hsdp: one copy on one rank
    plans = [dist_model.Plan(chosen, n, 1 if one and n == 1 else dist_model.check_replicas(chosen, n, replicas))
             for n in counts]  # fmt: skip
    for plan in plans:  # every check before the first launch
        dist_model.prepare_bench(spec, plan, config)
    results = [actions.bench(spec, config, plan.nproc, chosen, plan.replicas) for plan in plans]
    if None in results:
        return  # a rank other than 0 under torchrun: rank 0 reports
    results = actions.with_efficiency(results)
    if format is Format.json:
        out(json.dumps([r.as_dict() for r in results], indent=2), data=True)
    else:
        out(table(results))


def table(results: list) -> str:
    from netcfg.actions.bench_health import warning_lines
    from netcfg.cli.inspect_cmd import _table

    first = results[0]
    rows = []
    for r in results:
        rows.append([
            r.strategy, str(r.nproc), str(r.threads), str(r.batch), f"{r.median * 1000:.3f}", f"{r.min * 1000:.3f}",
            f"{r.samples_per_s:,.1f}", "-" if r.efficiency is None else f"{100 * r.efficiency:.0f}%",
            human_bytes(max(s.state_bytes for s in r.ranks)), human_bytes(max(s.peak_memory_bytes for s in r.ranks)),
            " ".join(f"{s.median * 1000:.1f}" for s in r.ranks),
        ])  # fmt: skip
    columns = [("strategy", "left"), ("nproc", "right"), ("threads", "right"), ("batch/rank", "right"),
               ("step ms", "right"), ("min ms", "right"), ("samples/s", "right"), ("efficiency", "right"),
               ("state/rank", "right"), ("peak/rank", "right"), ("rank step ms", "left")]  # fmt: skip
    head = (f"{first.mode} on {first.device} ({first.device_name[:40]}), {first.dtype}, torch {first.torch}, "
            f"{first.cores} cores{load_text(first)}")  # fmt: skip
    notes = [f"fsdp: {units_text(r.units)}" for r in results[:1] if r.strategy == "fsdp"]
    return _table(head, columns, rows) + "".join("\n" + line for line in notes + warning_lines(results, _label))


def _label(result) -> str:
    return f"{result.strategy} nproc {result.nproc}"


def load_text(result) -> str:
    """What the machine did around the run: the load average before it, the cores others kept busy in it."""
    load = "" if result.load_before is None else f", load average {result.load_before:.2f} before"
    return load + ("" if result.others_busy is None else f", other processes {result.others_busy:.2f} cores")
