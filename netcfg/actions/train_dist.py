"""netcfg train --nproc N --strategy ddp|fsdp: the one-process run (actions/train.py) on N ranks,
which the launcher of actions/distributed.py starts (the 'train' task).

The batch. `train.batch_size` is the global batch: each batch of the one-process run (the same
seeded epoch order, so the data position is still the step) is cut into N contiguous slices and
rank r runs slice r. Each rank scales its loss by its share of the step's samples times N, and
DDP or FSDP2 averages the gradients over the N ranks: the sum is the one-process gradient, up to
the order of the additions. The loss and the metric sums are all-reduced each step (with the stop
flag in the same tensor); the gradient clipping is the global norm (FSDP: over the DTensor shards).

Dropout draws from torch's RNG seeded by (seed, step, rank) at each step: the ranks draw apart,
and a resumed run draws what the uninterrupted one did without saving the ranks' RNG states.

Checkpoints are the one-process files. DDP: rank 0 writes its model and optimizer as one process
would. FSDP: the whole model and optimizer state is gathered to rank 0's CPU
(torch.distributed.checkpoint.state_dict, full_state_dict) and written in the same format; a
resume gives rank 0's copy to every rank's shards (broadcast_from_rank0). So a checkpoint of
--nproc 2 resumes in one process and the other way round.

Progress. Rank 0 writes each event as a JSON line to a scratch file that the calling process
follows (the ranks' own output goes to the launcher's logs). Stopping: the calling process
touches a stop file (its Ctrl-C), and each rank has a SIGINT handler (Ctrl-C on a terminal
reaches every process of the group); the flags are all-reduced after each step, so every rank
finishes the same step, one checkpoint is written, and the run ends as a stopped one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist

from netcfg.actions import train as t
from netcfg.actions import train_feed, train_state
from netcfg.actions.checkpoint import alias_groups
from netcfg.actions.checkpoint import save as save_model
from netcfg.actions.distributed import _TASKS, Job, build_sharded, check_nproc, launch
from netcfg.building import devices, ties
from netcfg.building import distributed as d
from netcfg.building.builder import build_spec
from netcfg.errors import Loc, TrainError
from netcfg.spec.model import Spec

EVENTS = {cls.__name__: cls for cls in (t.Started, t.Stepped, t.Validated, t.Saved, t.Finished)}
POLL_S = 0.05


@dataclass(frozen=True)
class TrainJob(Job):
    """A 'train' job: where the run goes, and the scratch folder of its events and stop file."""

    out: str = ""
    data: str | None = None
    resume: bool = False
    scratch: str = ""
    threads: int | None = None


# ---------------------------------------------------------------- the calling process


def train(
    spec: Spec,
    out: str,
    nproc: int,
    strategy: str = "ddp",
    data: str | None = None,
    resume: bool = False,
    device: str | None = None,
    stop: Callable[[], bool] = lambda: False,
    threads: int | None = None,
) -> Iterator[t.Event]:
    """actions.train.train on `nproc` processes: the same events, rank 0's."""
    t.needs_train(spec)
    kind = devices.resolve(device or "auto", Loc(f"--device {device}"))[0].type
    placed = d.launched_world()
    if placed is None:
        check_nproc(nproc, kind)
    _check_split(spec, nproc)
    if strategy == "fsdp" and spec.head.dtype in ("float16", "bfloat16"):
        raise TrainError(f"--strategy fsdp trains a {spec.head.dtype} spec's float32 shards, which a checkpoint "
                         "could not hold: train the float32 spec with `precision: bf16`",
                         spec.loc(("dtype",)))  # fmt: skip
    if strategy != "ddp" and not d.unit_paths(build_spec(spec, device="meta")):  # before any process starts
        raise d.no_units_error(spec, strategy)
    samples = t.check_files(spec, data)  # the ranks would find a bad file only after starting (seconds each)
    _check_last_batch(spec, samples, nproc)
    if placed is None or placed[0] == 0:  # under an outside torchrun, rank 0 alone writes to --out
        t._check_out(out, resume)
    with tempfile.TemporaryDirectory(prefix="netcfg-train-") as scratch:
        job = TrainJob("train", spec, strategy, kind, out=out, data=data, resume=resume, scratch=scratch,
                       threads=threads)  # fmt: skip
        yield from _follow(job, nproc, stop)


def _check_last_batch(spec: Spec, samples: int, nproc: int) -> None:
    """A rank must have samples in every batch: the last, partial one too."""
    train = spec.head.train
    rest = 0 if train.drop_last else samples % train.batch_size
    if 0 < rest < nproc:
        raise TrainError(
            f"each epoch's last batch holds {rest} sample(s), fewer than the {nproc} processes: "
            "`drop_last: true` leaves it out",
            spec.loc(("train", "batch_size")),
        )


def _check_split(spec: Spec, nproc: int) -> None:
    batch = spec.head.train.batch_size
    if batch % nproc:
        raise TrainError(f"the batch ({batch}) is the global batch: it must split evenly over the {nproc} processes "
                         f"of --nproc {nproc}", spec.loc(("train", "batch_size")))  # fmt: skip


def _follow(job: TrainJob, nproc: int, stop: Callable[[], bool]) -> Iterator[t.Event]:
    """Launch the ranks on a thread (the launcher installs no signal handlers off the main thread,
    so Ctrl-C stays ours) and yield rank 0's events as they come."""
    answer: dict = {}

    def ranks() -> None:
        try:
            launch(job, nproc)
        except BaseException as exc:  # noqa: BLE001  (raised again on the caller's thread)
            answer["error"] = exc

    thread = threading.Thread(target=ranks, name="netcfg-train-ranks", daemon=True)
    thread.start()
    tail = _Tail(Path(job.scratch, "events.jsonl"))
    asked = False
    try:
        while True:
            running = thread.is_alive()  # before reading: nothing written after it is missed
            if not asked and stop():
                Path(job.scratch, "stop").touch()
                asked = True
            for line in tail.lines():
                yield _event(line)
            if not running:
                break
            thread.join(POLL_S)
    finally:
        if thread.is_alive():  # the caller gave up (a second Ctrl-C): end the ranks, by their ids
            _end_ranks(job.scratch)
            thread.join(30)
    if "error" in answer:
        raise answer["error"]


class _Tail:
    """The whole lines appended to a file so far."""

    def __init__(self, path: Path):
        self.path, self.offset, self.rest = path, 0, b""

    def lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        *whole, self.rest = (self.rest + chunk).split(b"\n")
        return [line.decode() for line in whole]


def _event(line: str) -> t.Event:
    fields = json.loads(line)
    return EVENTS[fields.pop("event")](**fields)


def _end_ranks(scratch: str) -> None:
    for pid_file in Path(scratch).glob("pid-*"):
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid_file.read_text()), signal.SIGTERM)


# ---------------------------------------------------------------- each rank


def _train(job: TrainJob, world: d.World) -> None:
    if job.threads:
        torch.set_num_threads(job.threads)
    Path(job.scratch, f"pid-{world.rank}").write_text(str(os.getpid()))
    ranks = Ranks(job, world)
    with ranks.interruptible(), open(Path(job.scratch, "events.jsonl"), "a", encoding="utf-8") as events:
        for event in t.steps(ranks.run, ranks, job.resume, ranks.stopping):
            if world.rank == 0:
                if isinstance(event, t.Started):
                    event = replace(event, device=f"{event.device} x {world.size} ({job.strategy})")
                events.write(json.dumps({"event": type(event).__name__, **asdict(event)}) + "\n")
                events.flush()


_TASKS["train"] = _train


class Ranks(t.Local):
    """The place of a distributed run (see actions.train.Local): this rank's steps, all-reduced."""

    def __init__(self, job: TrainJob, world: d.World):
        self.job, self.world, self.main = job, world, world.rank == 0
        self.asked = self.stopped = False
        self.fsdp = job.strategy == "fsdp"
        self.run = t.prepare(job.spec, job.out, job.data, str(world.device), self._build)
        if self.fsdp:
            self.net = self.run.built.model  # fully_shard changed the model in place
        else:
            self.net = d.data_parallel(self.run.built, world)
        self._check_slices()

    def _build(self, spec: Spec, device: str):
        if self.fsdp:
            return build_sharded(spec, self.world)[0]  # with its pretrained: checkpoints
        from netcfg.actions.model import build_model

        return build_model(spec, device=device)  # the same seed on every rank: the same weights

    def _check_slices(self) -> None:
        _check_last_batch(self.run.built.spec, len(self.run.data), self.world.size)

    # -- steps

    def step(self, step: int, window: dict) -> float:
        run, world = self.run, self.world
        torch.manual_seed(_rank_seed(run.train.seed, step, world.rank))
        t.begin_step(run, step)
        batches = t._batches(run, step)
        samples = sum(len(b) for b in batches)
        mine = t._empty_window(run.train)
        parts = train_feed.step(run, step, self._parts)  # read by the run's workers, if any
        for i, (part, batch) in enumerate(zip(self._parts(run, step), parts, strict=True)):
            with self._sync(i == len(batches) - 1):
                value, out, y = t.backward(run, self.net, step, batch, len(part) * world.size / samples)
            t._add(mine, run.train, value, len(part), out, y)
        summed = self._reduce(mine, self.asked or Path(self.job.scratch, "stop").exists())
        self.stopped = summed.pop("stop") > 0
        total = summed["loss"] / samples
        t.check_finite(run, step, total)
        _merge(window, summed)
        t.end_step(run)
        return total

    def _parts(self, run, step: int) -> list[torch.Tensor]:
        """This rank's slice of each batch of `step`."""
        return [index.tensor_split(self.world.size)[self.world.rank] for index in t._batches(run, step)]

    def _sync(self, last: bool):
        """Gradients are averaged over the ranks on the last batch of a step only."""
        if self.fsdp:
            self.net.set_requires_gradient_sync(last)
            return contextlib.nullcontext()
        return contextlib.nullcontext() if last else self.net.no_sync()

    def _reduce(self, window: dict, stop: bool | None = None) -> dict:
        """A window's sums (and the stop flag) summed over the ranks, in one all-reduce."""
        names = list(window["correct"])
        values = [window["samples"], window["loss"], window["counted"], *window["correct"].values(), float(stop or 0)]
        summed = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(summed)
        out = summed.tolist()
        return {"samples": int(out[0]), "loss": out[1], "counted": int(out[2]),
                "correct": {n: int(v) for n, v in zip(names, out[3:-1], strict=True)}, "stop": out[-1]}  # fmt: skip

    def stopping(self) -> bool:
        return self.stopped

    def evaluate(self, data) -> dict:
        size, rank = self.world.size, self.world.rank

        def part(index: torch.Tensor):
            mine = index.tensor_split(size)[rank]
            # a rank without samples in a batch still runs one (uncounted): FSDP's gathers need every rank
            return (mine, True) if len(mine) else (index[:1], False)

        summed = self._reduce(t.evaluated(self.run, data, self.net, part))
        summed.pop("stop")
        return t._means(summed)

    # -- checkpoints

    def save(self, step: int, window: dict) -> str:
        run = self.run
        states = self._gathered() if self.fsdp else None
        if self.main:
            train_state.save(run.out, step, self.run.built.model, run.optimizer, run.record, window,
                             run.train.checkpoint.keep, states=states)  # fmt: skip
        return train_state.path_of(run.out, step)

    def _gathered(self) -> tuple[dict, dict] | None:
        """The whole model and optimizer state on rank 0's CPU (a collective), the optimizer's
        keyed by parameter number as a one-process state_dict is."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

        options = self._options()
        model = get_model_state_dict(self.net, options=options)
        optimizer = get_optimizer_state_dict(self.net, self.run.optimizer, options=options)
        return (model, _by_number(optimizer, self._names())) if self.main else None

    def _options(self, load: bool = False):
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        if load:
            return StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
        return StateDictOptions(full_state_dict=True, cpu_offload=True)

    def _names(self) -> list[list[str]]:
        """Each optimizer group's parameter names, in the optimizer's order."""
        names = {id(p): name for name, p in self.net.named_parameters()}
        return [[names[id(p)] for p in group["params"]] for group in self.run.optimizer.param_groups]

    def restore(self, path: str) -> train_state.State:
        if not self.fsdp:  # every rank reads the file: the same weights and optimizer state everywhere
            return train_state.restore(path, self.run.built.model, self.run.optimizer)
        from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

        record = train_state.read_run(path)
        model, optimizer = ({}, {})
        if self.main:  # rank 0 reads the file; the others get their shards from it
            record, tensors = train_state.read(path)
            model = _model_state(tensors, self.run.built.model, path)
            optimizer = _by_name(train_state.optimizer_state(tensors, record), self._names())
        set_model_state_dict(self.net, model, options=self._options(load=True))
        set_optimizer_state_dict(self.net, self.run.optimizer, optimizer, options=self._options(load=True))
        return train_state.State(step=record["step"], window=record["window"], path=path)

    def save_model(self, path: str) -> None:
        if not self.fsdp:
            if self.main:
                save_model(self.run.built, path)
            return
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        state = get_model_state_dict(self.net, options=self._options())
        if self.main:
            save_model(_whole(self.run.built, state), path)

    @contextlib.contextmanager
    def interruptible(self):
        """Ctrl-C on a terminal reaches every rank: it asks for a stop, as the stop file does."""
        if threading.current_thread() is not threading.main_thread():  # under an outside torchrun, in a thread
            yield
            return

        def ask(signum, frame):
            self.asked = True

        previous = signal.signal(signal.SIGINT, ask)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def _rank_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 8_191 + rank) % 2**63


def _merge(window: dict, summed: dict) -> None:
    window["samples"] += summed["samples"]
    window["loss"] += summed["loss"]
    window["counted"] += summed["counted"]
    for name, count in summed["correct"].items():
        window["correct"][name] += count


def _by_number(state: dict, names: list[list[str]]) -> dict:
    """A gathered optimizer state (keyed by parameter name) keyed by number, as optimizer.state_dict() is."""
    number = {name: i for i, name in enumerate(n for group in names for n in group)}
    groups = [
        {**{k: v for k, v in saved.items() if k != "params"}, "params": [number[n] for n in mine]}
        for saved, mine in zip(state["param_groups"], names, strict=True)
    ]
    return {"state": {number[n]: v for n, v in state["state"].items() if n in number}, "param_groups": groups}


def _by_name(state: dict, names: list[list[str]]) -> dict:
    """A one-process optimizer state_dict keyed by parameter name (what set_optimizer_state_dict reads)."""
    name = [n for group in names for n in group]
    groups = [{**{k: v for k, v in saved.items() if k != "params"}, "params": [name[i] for i in saved["params"]]}
              for saved in state["param_groups"]]  # fmt: skip
    return {"state": {name[i]: v for i, v in state["state"].items()}, "param_groups": groups}


def _model_state(tensors: dict, model, path: str) -> dict:
    """The model's whole state dict from a checkpoint's tensors (each tie stored once)."""
    state = {}
    for group in alias_groups(model):
        saved = tensors.get(f"model.{group[0]}")
        if saved is None:
            raise TrainError(f"its tensor 'model.{group[0]}' is missing", Loc(path))
        state.update(dict.fromkeys(group, saved))
    return state


def _whole(built, state: dict):
    """A one-process copy of the model on the CPU holding `state` (rank 0, to save the final model)."""
    from netcfg.building.builder import build_spec

    twin = build_spec(built.spec, device="meta", seed=built.seed, memory_check=False)
    tied = [g for g in alias_groups(twin.model) if len(g) > 1]
    twin.model.to_empty(device="cpu")  # gives each path of a tie its own tensor: saved twice, unless tied again
    ties.tie(twin.model, tied)
    twin.model.load_state_dict(state)
    return replace(twin, device=torch.device("cpu"))
