"""The batches of a training run, read in the training process or ahead of the step by
data-loader worker processes (`train.workers`).

Which samples a step trains on is the run's business (netcfg.actions.train: each epoch's order is
drawn from (seed, epoch), so the step is the data position); this module only reads them. The
keys it is given, one per step from the step the run starts at (0 or the resumed checkpoint's),
go through a sampler to torch's DataLoader, whose workers read each step's batches and hand them
back in order: workers change when a batch is read, never which, so a run with workers ends bit
for bit as one without, and resumes as exactly. Workers draw no random numbers (no augmentation);
the DataLoader gets a generator of its own, so that starting it draws nothing from torch's global
RNG (dropout's, which checkpoints save).

A worker that dies (killed, out of memory) stops the run with one line at the next batch taken.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Sampler

from netcfg.errors import Loc, NetcfgError, TrainError

Key = tuple[str, list[torch.Tensor]]
"""What to read: (what for, as a problem names it: 'step 12'; the sample indices of each batch)."""
Batch = tuple[list[torch.Tensor], torch.Tensor]
"""The model's inputs and the target of one batch."""


class Batches:
    """The batches of a sequence of keys, in order. `workers` > 0: read ahead by that many
    persistent worker processes; iterating again (a validation each epoch) reuses them."""

    def __init__(self, data, keys: Iterable[Key], workers: int, device: torch.device, where: Loc):
        self.data, self.keys, self.workers, self.device, self.where = data, keys, workers, device, where
        self.loader = None
        if workers:
            self.loader = DataLoader(
                _Reads(data), sampler=_Keys(keys), batch_size=None, num_workers=workers, collate_fn=_as_is,
                persistent_workers=True, pin_memory=device.type == "cuda", generator=torch.Generator(),
                worker_init_fn=_worker_started,
            )  # fmt: skip

    def __iter__(self) -> Iterator[list[Batch]]:
        if self.loader is None:
            for reading, index in self.keys:
                yield [self.data.take(i, self.device, reading) for i in index]
            return
        batches = _without_sigchld(lambda: iter(self.loader))
        while True:
            try:
                read = next(batches)
            except StopIteration:
                return
            except (RuntimeError, EOFError, OSError) as exc:  # torch's words for a worker that died, or its
                if isinstance(exc, RuntimeError) and "DataLoader worker" not in str(exc):  # queue's end with it
                    raise
                raise TrainError(f"a data-loader worker died ({_said(exc)}): stopped; --resume goes on from the last "
                                 "checkpoint", self.where) from None  # fmt: skip
            if isinstance(read, _Failed):
                raise read.error(read.diagnostics)
            yield [([x.to(self.device, non_blocking=True) for x in xs], y.to(self.device, non_blocking=True))
                   for xs, y in read]  # fmt: skip

    def close(self) -> None:
        """Stop the workers now (else they go when the loader is collected)."""
        running = getattr(self.loader, "_iterator", None)
        if running is not None:
            running._shutdown_workers()
            self.loader._iterator = None


def step(run, step: int, batches_of: Callable) -> list[Batch]:
    """The batches of `step` (from 0) of a run (netcfg.actions.train.Run): `batches_of(run, step)`
    gives their sample indices. Read ahead by the run's workers; the steps are read in order, and
    a step out of order (the first, or after a resume) starts the reading there."""
    feed = run.feeds.get("train")
    if feed is None or feed.next_step != step:
        close(run)
        keys = StepKeys(lambda s: batches_of(run, s), step, run.total_steps)
        feed = run.feeds["train"] = _Steps(Batches(run.data, keys, run.train.workers, run.built.device, _where(run)))
        feed.next_step = step
    feed.next_step += 1
    return next(feed.reading)


class _Steps:
    """The batches of the steps in order, and the step read next."""

    def __init__(self, batches: Batches):
        self.batches, self.reading, self.next_step = batches, iter(batches), 0

    def close(self) -> None:
        self.reading.close()
        self.batches.close()


def validation(run, data, part: Callable | None = None) -> Iterable[tuple[Batch, bool]]:
    """The batches of the validation data, in order, each with whether it counts; the workers stay
    for the next epoch's. `part(index)` -> (the samples this process runs, whether they count): a
    rank's slice of each batch (several processes)."""
    feed = run.feeds.get("validation")
    if feed is None:
        keys = validation_keys(len(data), run.train.batch_size)
        counted = [True] * len(keys)
        if part is not None:
            parts = [part(index) for _, (index,) in keys]
            keys = [(reading, [mine]) for (reading, _), (mine, _) in zip(keys, parts, strict=True)]
            counted = [counts for _, counts in parts]
        feed = run.feeds["validation"] = Batches(data, keys, run.train.workers, run.built.device, _where(run))
        feed.counted = counted
    for batches, counts in zip(feed, feed.counted, strict=True):
        for batch in batches:
            yield batch, counts


@contextlib.contextmanager
def closing(run):
    """Stop the run's workers on the way out, however it goes (a generator closed, an error)."""
    try:
        yield
    finally:
        close(run)


def close(run) -> None:
    for feed in run.feeds.values():
        feed.close()
    run.feeds.clear()


def _where(run) -> Loc:
    return run.built.spec.loc(("train", "workers"))


class StepKeys:
    """The keys of the steps from `start` to `total`: each step's batches, as `batches_of(step)`
    gives them (step from 0; its problems name it from 1)."""

    def __init__(self, batches_of: Callable[[int], list[torch.Tensor]], start: int, total: int):
        self.batches_of, self.start, self.total = batches_of, start, total

    def __iter__(self) -> Iterator[Key]:
        for step in range(self.start, self.total):
            yield f"step {step + 1}", self.batches_of(step)

    def __len__(self) -> int:
        return self.total - self.start


def validation_keys(count: int, batch_size: int) -> list[Key]:
    """Every sample in order, a batch of `batch_size` per key."""
    return [("validation", [torch.arange(s, min(s + batch_size, count))]) for s in range(0, count, batch_size)]


class _Keys(Sampler):
    """The keys, as the DataLoader's sampler (it runs in the training process)."""

    def __init__(self, keys: Iterable[Key]):
        self.keys = keys

    def __iter__(self):
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


class _Reads(torch.utils.data.Dataset):
    """What a worker does with a key: read its batches on the CPU. A netcfg error goes back as
    data (the DataLoader would re-raise it as its type built from a traceback's text)."""

    def __init__(self, data):
        self.data = data

    def __getitem__(self, key: Key):
        reading, index = key
        try:
            return [self.data.take(i, torch.device("cpu"), reading) for i in index]
        except NetcfgError as exc:
            return _Failed(type(exc), exc.diagnostics)


@dataclass(frozen=True)
class _Failed:
    error: type
    diagnostics: list


def _worker_started(worker: int) -> None:
    """Ctrl-C reaches the terminal's whole process group: the training process finishes its step
    and writes a checkpoint, reading batches from workers that must still be there (they are
    stopped by the training process, or go when it goes)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _said(exc: BaseException) -> str:
    """The first line of what an exception says, or its kind (an EOFError says nothing)."""
    text = str(exc).strip().splitlines()
    return text[0].rstrip(". ") if text else f"{type(exc).__name__} reading from it"


def _as_is(batch):
    return batch


def _without_sigchld(start: Callable):
    """Start the workers with the SIGCHLD handler as it was: torch's raises in whatever the
    training process is doing when a worker dies (writing a checkpoint, say); without it the
    death is seen where the next batch is taken (torch checks its workers every few seconds)."""
    if not hasattr(signal, "SIGCHLD") or threading.current_thread() is not threading.main_thread():
        return start()  # torch installs its handler only in the main thread
    previous = signal.getsignal(signal.SIGCHLD)
    try:
        return start()
    finally:
        signal.signal(signal.SIGCHLD, previous)
