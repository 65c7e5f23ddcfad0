"""netcfg build: build the model and print its module tree and a summary line."""

from __future__ import annotations

import typer

from netcfg.cli import dist_cmds
from netcfg.cli._common import (
    DebugOpt,
    DeviceOpt,
    MemoryOpt,
    PluginOpt,
    SeedOpt,
    SetOpt,
    SpecArg,
    load,
    note,
    out,
)
from netcfg.cli.bench_dist import ReplicasOpt, StrategyOpt
from netcfg.text import human_bytes


def build(
    spec: SpecArg,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    set_: SetOpt = None,
    plugin: PluginOpt = None,
    memory_check: MemoryOpt = True,
    nproc: dist_cmds.NprocOpt = None,
    strategy: StrategyOpt = None,
    replicas: ReplicasOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Build a spec into a PyTorch module; print the module tree and the parameter count.

    Example: netcfg build configs/resnet18.yaml --device cpu --seed 1
    """
    from netcfg.actions.model import build_model, summarize

    if dist_cmds.wanted(nproc, strategy, replicas):
        result = dist_cmds.build(spec, set_, plugin, nproc, strategy, replicas, device, seed, memory_check)
        if result is not None:  # None: a rank other than 0 under torchrun (rank 0 reports)
            show(result.warnings, result.summary, dist_cmds.rank_lines(result))
        return
    built = build_model(load(spec, set_, plugin), device=device, seed=seed, memory_check=memory_check)
    show(built.warnings, summarize(built))


def show(warnings: list[str], summary, more: tuple[str, ...] | list[str] = ()) -> None:
    for warning in warnings:
        note(warning)
    out(summary.tree)
    out(summary_line(summary))
    for line in more:
        out(line)


def summary_line(s) -> str:
    where = s.device if s.device_note == s.device else f"{s.device} ({s.device_note})"
    tied = f" ({s.entries:,} counting each tied path)" if s.entries != s.parameters else ""
    return (
        f"{s.parameters:,} parameters{tied}, {s.bytes:,} bytes ({human_bytes(s.bytes)}), "
        f"device {where}, dtype {s.dtype}"
    )


def register(app: typer.Typer) -> None:
    app.command("build")(build)
