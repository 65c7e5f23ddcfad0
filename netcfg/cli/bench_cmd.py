"""netcfg bench and netcfg devices."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from netcfg.actions.bench_health import warning_lines
from netcfg.cli import bench_dist
from netcfg.cli._common import (
    DebugOpt,
    DTypeOpt,
    Format,
    FormatOpt,
    MemoryOpt,
    Mode,
    ModeOpt,
    PluginOpt,
    Scenario,
    ScenarioOpt,
    SeedOpt,
    SetOpt,
    integer,
    is_tty,
    load,
    out,
    paths,
    real,
    refuse_flags,
)
from netcfg.cli.bench_dist import load_text
from netcfg.errors import InputError, Loc
from netcfg.numbers import BATCH_MAX, MAX_SECONDS, THREADS_PER_CORE, max_threads
from netcfg.text import human_bytes

SpecOpt = Annotated[
    Optional[Path],
    typer.Argument(metavar="SPEC", help="Spec file (YAML); not needed with --scenario.", callback=paths()),
]
DevicesOpt = Annotated[
    str,
    typer.Option("--device", metavar="DEVICE[,DEVICE...]",
                 help="auto | cpu | cuda | cuda:N | mps, or several: cpu,cuda."),
]  # fmt: skip
BatchOpt = Annotated[
    Optional[int],
    typer.Option("--batch", metavar="N", help="Batch size (default: the spec's input).",
                 parser=integer("--batch", 1, BATCH_MAX)),
]  # fmt: skip
AmpOpt = Annotated[bool, typer.Option("--amp", help="Autocast to bfloat16 (float16 with --dtype float16).")]
CompileOpt = Annotated[bool, typer.Option("--compile", help="torch.compile the model; compile time reported apart.")]
WarmupOpt = Annotated[
    str, typer.Option("--warmup", metavar="N|Ns", help="Warm-up iterations (10) or seconds (2s), not timed.")
]
MinTimeOpt = Annotated[
    float,
    typer.Option("--min-time", metavar="SECONDS", help=f"Measure at least this many seconds (at most {MAX_SECONDS:g}).",
                 parser=real("--min-time", 0.0, MAX_SECONDS, " seconds")),
]  # fmt: skip
ThreadsOpt = Annotated[
    Optional[int],
    typer.Option("--threads", metavar="N",
                 help=f"CPU threads (torch.set_num_threads; at most {THREADS_PER_CORE} per core).",
                 parser=integer("--threads", 1, max_threads(), f" ({THREADS_PER_CORE} per CPU core here)")),
]  # fmt: skip
SweepOpt = Annotated[
    Optional[str], typer.Option("--sweep", metavar="batch=N,N,...", help="Time each batch size, e.g. batch=1,8,64.")
]


def bench(
    spec: SpecOpt = None,
    device: DevicesOpt = "auto",
    batch: BatchOpt = None,
    dtype: DTypeOpt = None,
    amp: AmpOpt = False,
    compile: CompileOpt = False,
    mode: ModeOpt = Mode.inference,
    warmup: WarmupOpt = "10",
    min_time: MinTimeOpt = 1.0,
    threads: ThreadsOpt = None,
    format: FormatOpt = Format.table,
    sweep: SweepOpt = None,
    scenario: ScenarioOpt = None,
    seed: SeedOpt = None,
    set_: SetOpt = None,
    plugin: PluginOpt = None,
    memory_check: MemoryOpt = True,
    nproc: bench_dist.NprocOpt = None,
    strategy: bench_dist.StrategyOpt = None,
    replicas: bench_dist.ReplicasOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Time a spec's forward pass (or training step): median, p90, p99, IQR, samples/s, peak memory.

    Example: netcfg bench configs/resnet50.yaml --device cpu,cuda --sweep batch=1,8,64
    """
    from netcfg.actions import bench as actions

    if scenario is not None:
        refuse_flags({"SPEC": spec is not None, "--batch": batch is not None, "--dtype": dtype is not None,
                      "--amp": amp, "--compile": compile, "--mode": mode is not Mode.inference,
                      "--warmup": warmup != "10", "--sweep": bool(sweep), "--seed": seed is not None,
                      "--set": bool(set_), "--plugin": bool(plugin)},
                     f"does not apply to --scenario {scenario.value} (it times a fixed workload)")  # fmt: skip
        refuse_flags({"--device": scenario is Scenario.two_gpus and device != "auto"},
                     "does not apply to --scenario two_gpus (it uses cuda:0 and cuda:1)")  # fmt: skip
        _scenarios(scenario.value, actions.parse_devices(device), format, min_time, threads)
        return
    names = actions.parse_devices(device)
    if spec is None:
        raise InputError("give a spec file to time (or a --scenario)", Loc("SPEC"))
    loaded = load(spec, set_, plugin)
    if batch is not None and sweep:
        raise InputError("--batch and --sweep are alternatives: give the batch sizes to --sweep", Loc("--batch"))
    warm, in_seconds = actions.parse_warmup(warmup)
    batches = actions.parse_sweep(sweep) if sweep else [batch]
    _check_batches(actions, loaded, batches, "--sweep" if sweep else "--batch")
    configs = [
        actions.BenchConfig(device=d, batch=b, dtype=dtype.value if dtype else None, amp=amp, compile=compile,
                            mode=mode.value, warmup=warm, warmup_is_seconds=in_seconds, min_time=min_time,
                            max_time=max(10.0, 10 * min_time), threads=threads, seed=seed,
                            memory_check=memory_check)
        for b in batches for d in names
    ]  # fmt: skip
    if bench_dist.wanted(nproc, strategy) or replicas is not None:
        given = {"--device": len(names) > 1, "--sweep": bool(sweep), "--compile": compile, "--amp": amp,
                 "--plugin": bool(plugin)}  # fmt: skip
        bench_dist.run(loaded, configs, nproc, strategy, format, given, replicas)
        return
    results = _run_all(actions, loaded, configs, show=format is Format.table)
    if format is Format.json:
        out(json.dumps([r.as_dict() for r in results], indent=2), data=True)
    else:
        out(table(results))


def _check_batches(actions, spec, batches: list, flag: str) -> None:
    """A batch size the spec's input cannot take is that flag's error, not the file's."""
    from netcfg.errors import SpecError

    for b in batches:
        if b is None:
            continue
        try:
            actions.with_batch(spec, b)
        except SpecError as exc:
            raise InputError(f"batch {b}: {exc.diagnostics[0].message}", Loc(f"{flag} {b}")) from None


def _run_all(actions, spec, configs: list, show: bool) -> list:
    if not (show and is_tty()):
        return [actions.bench(spec, c) for c in configs]
    from rich.progress import Progress

    results = []
    with Progress(transient=True) as progress:
        for config in configs:
            task = progress.add_task(f"{config.device} batch {config.batch or 'spec'}", total=1.0)
            results.append(actions.bench(spec, config, lambda f, t=task: progress.update(t, completed=f)))
    return results


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


def table(results: list) -> str:
    from netcfg.cli.inspect_cmd import _table

    first = results[0]
    rows = []
    for r in results:
        base = next((b for b in results if b.batch == r.batch), r)
        speedup = f"{base.median / r.median:.2f}x" if len({x.device for x in results}) > 1 else "-"
        memory = human_bytes(r.peak_memory_bytes) + (f" ({human_bytes(r.peak_reserved_bytes)} reserved)"
                                                     if r.peak_reserved_bytes is not None else "")  # fmt: skip
        rows.append([
            r.device, r.device_name[:40], str(r.batch), r.dtype + (" amp" if r.amp else ""), _ms(r.median),
            _ms(r.p90), _ms(r.p99), _ms(r.min), _ms(r.iqr), f"{r.samples_per_s:,.1f}", memory, speedup,
        ])  # fmt: skip
    columns = [("device", "left"), ("name", "left"), ("batch", "right"), ("dtype", "left"), ("median ms", "right"),
               ("p90 ms", "right"), ("p99 ms", "right"), ("min ms", "right"), ("IQR ms", "right"),
               ("samples/s", "right"), ("peak memory", "left"), ("speed-up", "right")]  # fmt: skip
    head = (f"{first.mode}{' (compiled)' if first.compiled else ''}, torch {first.torch}, {first.threads} CPU threads "
            f"on {first.cores} cores{load_text(first)}; {sum(r.rounds for r in results)} timed rounds")  # fmt: skip
    text = _table(head, columns, rows)
    compiled = [f"{r.device}: compiled in {r.compile_time_s:.2f} s" for r in results if r.compile_time_s is not None]
    return text + "".join("\n" + line for line in compiled + warning_lines(results))


def _scenarios(name: str, devices: list[str], format: Format, min_time: float, threads: int | None) -> None:
    import torch

    from netcfg.actions import scenarios
    from netcfg.building import devices as device_lookup

    if threads:
        torch.set_num_threads(threads)
    if name == "two_gpus":
        results = [scenarios.two_gpus(min_time)]
    else:
        run = scenarios.transfers if name == "transfers" else scenarios.logging
        results = [run(device_lookup.resolve(d)[0], min_time) for d in devices]
    if format is Format.json:
        out(json.dumps([{**vars(r), "ratio": r.ratio} for r in results], indent=2), data=True)
        return
    for r in results:
        out(f"{r.scenario} on {r.device}: {r.slow_label}: {r.slow_s * 1000:.2f} ms; "
            f"{r.fast_label}: {r.fast_s * 1000:.2f} ms; {r.ratio:.1f}x")  # fmt: skip


def devices_cmd(format: FormatOpt = Format.table, debug: DebugOpt = False) -> None:
    """List the devices netcfg can use here: CPU, CUDA GPUs (name, memory, capability), MPS.

    Example: netcfg devices
    """
    import os

    import torch

    from netcfg.actions.bench import device_name
    from netcfg.building.memory import available

    rows = [{"device": "cpu", "name": device_name(torch.device("cpu")), "cores": os.cpu_count(),
             "threads": torch.get_num_threads(), "free_memory": available(torch.device("cpu"))}]  # fmt: skip
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            rows.append({"device": f"cuda:{i}", "name": props.name, "memory": props.total_memory,
                         "capability": f"{props.major}.{props.minor}",
                         "free_memory": available(torch.device("cuda", i))})  # fmt: skip
    backend = getattr(torch.backends, "mps", None)
    if backend is not None and backend.is_available():
        rows.append({"device": "mps", "name": "Apple GPU"})
    if format is Format.json:
        out(json.dumps(rows, indent=2), data=True)
        return
    for row in rows:
        details = ", ".join(
            f"{k} {human_bytes(v) if 'memory' in k and isinstance(v, int) else v}" for k, v in row.items()
            if k not in ("device", "name") and v is not None
        )  # fmt: skip
        out(f"{row['device']:8s} {row['name']}  ({details})")
    if len(rows) == 1:
        out(
            "no GPU: torch.cuda.is_available() is False"
            + (f" (torch built for CUDA {torch.version.cuda})" if torch.version.cuda else " (a CPU build of torch)")
        )


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
    app.command("devices")(devices_cmd)
