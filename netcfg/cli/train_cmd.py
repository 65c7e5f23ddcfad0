"""netcfg train: run the spec's `train:` section, with progress on a terminal.

Ctrl-C finishes the step under way, writes a checkpoint and exits 0 (`--resume` goes on from
it); a second Ctrl-C ends at once (the last checkpoint stays)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Optional

import typer

from netcfg.cli._common import (
    DebugOpt,
    DeviceOpt,
    PluginOpt,
    SetOpt,
    SpecArg,
    integer,
    is_tty,
    load,
    note,
    out,
    paths,
)
from netcfg.cli.bench_cmd import ThreadsOpt
from netcfg.cli.bench_dist import Strategy, StrategyOpt
from netcfg.errors import InputError, Loc

DataOpt = Annotated[
    Optional[Path],
    typer.Option("--data", metavar="FILE", help="The training data (.safetensors), instead of the spec's train.data.",
                 callback=paths("--data")),
]  # fmt: skip
OutDirOpt = Annotated[
    Path,
    typer.Option(
        "--out",
        metavar="DIR",
        help="Where metrics.jsonl, checkpoints/ and model.safetensors go.",
        callback=paths("--out"),
    ),
]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Go on from the newest checkpoint in --out.")]
NprocOpt = Annotated[
    Optional[int],
    typer.Option("--nproc", metavar="N",
                 help="Train on N processes (gloo on CPU, NCCL on CUDA); train.batch_size is the global batch.",
                 parser=integer("--nproc", 1, 64)),
]  # fmt: skip
WorkersOpt = Annotated[
    Optional[int],
    typer.Option("--workers", metavar="N", min=0, max=256,
                 help="Data-loader worker processes reading batches ahead (train.workers; 0: none)."),
]  # fmt: skip


def train(
    spec: SpecArg,
    data: DataOpt = None,
    out_dir: OutDirOpt = Path("runs/train"),
    resume: ResumeOpt = False,
    nproc: NprocOpt = None,
    strategy: StrategyOpt = None,
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
    workers: WorkersOpt = None,
    set_: SetOpt = None,
    plugin: PluginOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Train a spec's model as its `train:` section says (data, loss, optimizer, schedule).

    Writes one JSON line per logged step and per validation to DIR/metrics.jsonl, resumable
    checkpoints to DIR/checkpoints/, and the final model to DIR/model.safetensors (a netcfg
    checkpoint: netcfg load, inspect and run read it).

    With --nproc N the run is split over N processes (DDP, or FSDP2 with --strategy fsdp); its
    checkpoints are the one-process ones, so either kind of run resumes the other's.

    Example: netcfg train examples/digits/cnn.yaml --out runs/digits
    """
    import torch

    from netcfg.actions import train as actions

    if threads:
        torch.set_num_threads(threads)
    stop = _Stop()
    loaded = load(spec, set_, plugin)
    if workers is not None and loaded.head.train is not None:  # checked by typer: 0 to 256
        train_spec = loaded.head.train.model_copy(update={"workers": workers})
        loaded.head = loaded.head.model_copy(update={"train": train_spec})
    data_path = None if data is None else str(data)
    count = _processes(nproc, strategy)
    if count is None:
        events = actions.train(loaded, str(out_dir), data_path, resume, device, stop)
    else:
        from netcfg.actions import train_dist

        chosen = (strategy or Strategy.ddp).value
        events = train_dist.train(loaded, str(out_dir), count, chosen, data_path, resume, device, stop, threads)
    with stop.installed():
        _show(events)


def _processes(nproc: int | None, strategy: Strategy | None) -> int | None:
    """The number of processes of a distributed run (an outside torchrun's), None for one process."""
    from netcfg.building.distributed import launched_world

    if strategy is Strategy.hsdp:  # bench/build/run take it (StrategyOpt is theirs too); training does not yet
        raise InputError("train does not take --strategy hsdp yet: use ddp or fsdp", Loc("--strategy hsdp"))
    placed = launched_world()
    if nproc is None and placed is not None:
        return placed[1]
    if nproc is None and strategy is not None:
        raise InputError("needs --nproc N: the number of processes", Loc(f"--strategy {strategy.value}"))
    return nproc


class _Stop:
    """The first Ctrl-C asks the run to stop after its step; a second one interrupts at once."""

    def __init__(self):
        self.asked = False

    def __call__(self) -> bool:
        return self.asked

    def installed(self):
        import contextlib

        @contextlib.contextmanager
        def handler():
            def ask(signum, frame):
                if self.asked:
                    raise KeyboardInterrupt
                self.asked = True
                note("stopping after this step (Ctrl-C again to stop at once) ...")

            previous = signal.signal(signal.SIGINT, ask)
            try:
                yield
            finally:
                signal.signal(signal.SIGINT, previous)

        return handler()


def _show(events) -> None:
    from netcfg.actions.train import Finished, Saved, Started, Stepped, Validated

    bar = _Bar() if is_tty() else None
    try:
        for event in events:
            if isinstance(event, Started):
                _started(event)
                if bar:
                    bar.start(event)
            elif isinstance(event, Stepped) and bar:
                bar.update(event)
            elif isinstance(event, Validated):
                _say(bar, f"epoch {event.epoch} (step {event.step:,}): validation {_metrics(event.metrics)}")
            elif isinstance(event, Saved) and not bar:
                note(f"checkpoint {event.path} ({event.seconds * 1000:.0f} ms)")
            elif isinstance(event, Finished):
                if bar:
                    bar.stop()
                _finished(event)
    finally:
        if bar:
            bar.stop()


def _started(e) -> None:
    where = f"resuming {e.resumed_from} at step {e.step:,}" if e.resumed_from else "from step 0"
    note(f"training on {e.device}: {e.samples:,} samples ({e.validation_samples:,} for validation), "
         f"{e.total_steps:,} steps, {where}")  # fmt: skip


def _finished(e) -> None:
    if e.stopped:
        note(f"stopped at step {e.step:,} of {e.total_steps:,}; checkpoint {e.checkpoint}: go on with --resume")
        return
    final = f"; validation {_metrics(e.validation)}" if e.validation else ""
    out(f"trained {e.total_steps:,} steps in {e.wall_s:.1f} s{final}")
    out(f"model: {e.model}")


def _metrics(metrics: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())


def _say(bar, text: str) -> None:
    if bar:
        bar.print(text)
    else:
        note(text)


class _Bar:
    """rich's progress bar: step, loss, samples/s and the time left."""

    def start(self, e) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = [TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}")]
        self.progress = Progress(*columns, TimeRemainingColumn(), transient=True)
        self.progress.start()
        self.task = self.progress.add_task("train", total=e.total_steps, completed=e.step, status="")

    def update(self, e) -> None:
        status = f"loss {e.loss:.4f} lr {e.lr:.2e} {e.samples_per_s:,.0f} samples/s"
        self.progress.update(self.task, completed=e.step, status=status)

    def print(self, text: str) -> None:
        if getattr(self, "progress", None) is not None:
            self.progress.console.print(text, markup=False, highlight=False)

    def stop(self) -> None:
        if getattr(self, "progress", None) is not None:
            self.progress.stop()
            self.progress = None


def register(app: typer.Typer) -> None:
    app.command("train")(train)
