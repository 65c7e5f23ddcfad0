"""netcfg train: the spec's `train:` run, as a generator of progress events (prints nothing).

One step is one optimizer step over `accumulate` batches. Everything a step does is a function
of the step number and the state a checkpoint holds: the data order of epoch e is a permutation
drawn from its own generator seeded by (seed, e); the learning rate is computed from the step;
dropout draws from torch's RNG, whose state is saved. So a run resumed from a checkpoint does
what the uninterrupted run did, bit for bit, and writes the same lines to OUT/metrics.jsonl
(the lines past the checkpoint are dropped on resume and written again).

A resume may lengthen (or shorten, down to the steps done) the run: train.epochs and train.steps
may differ from the checkpoint's spec, nothing else. Each step's learning rate is computed from the
spec as it is now, so a cosine schedule spans the new total from the resumed step on (the steps
before it ran on the old one); a schedule that ignores the total (constant, step) continues
exactly as a run planned that long from the start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from netcfg.actions import train_data, train_feed, train_state
from netcfg.actions.checkpoint import save as save_model
from netcfg.actions.failures import TORCH_FAILURES, first_line
from netcfg.actions.model import build_model
from netcfg.building.builder import Built, named_outputs
from netcfg.errors import InputError, Loc, TrainError
from netcfg.io.output import write_text_atomic
from netcfg.spec.model import Spec
from netcfg.spec.train import TrainSpec

NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.RMSNorm)


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class Started:
    total_steps: int
    step: int
    """The step it starts from (0, or the resumed checkpoint's)."""
    samples: int
    validation_samples: int
    resumed_from: str | None
    device: str


@dataclass(frozen=True)
class Stepped:
    step: int
    total_steps: int
    epoch: int
    loss: float
    lr: float
    samples_per_s: float
    eta_s: float


@dataclass(frozen=True)
class Validated:
    step: int
    epoch: int
    metrics: dict


@dataclass(frozen=True)
class Saved:
    step: int
    path: str
    seconds: float


@dataclass(frozen=True)
class Finished:
    step: int
    total_steps: int
    stopped: bool
    """True: stopped early on request, resumable from `checkpoint`."""
    checkpoint: str | None
    model: str | None
    """The final model (a netcfg checkpoint), when the run completed."""
    validation: dict | None
    wall_s: float


Event = Started | Stepped | Validated | Saved | Finished


# ---------------------------------------------------------------- the run


@dataclass
class Run:
    built: Built
    train: TrainSpec
    out: str
    data: train_data.Dataset
    validation: train_data.Dataset | None
    output: str
    steps_per_epoch: int
    total_steps: int
    record: dict
    """What a checkpoint records of the run, to tell a resume from another run."""
    optimizer: torch.optim.Optimizer = field(init=False)
    orders: dict = field(default_factory=dict)
    """The sample order of the current epoch (see _order)."""
    feeds: dict = field(default_factory=dict)
    """The readers of the batches (see train_feed), with their worker processes."""

    def __post_init__(self) -> None:
        self.optimizer = make_optimizer(self.built.model, self.train)


def train(
    spec: Spec,
    out: str,
    data: str | None = None,
    resume: bool = False,
    device: str | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> Iterator[Event]:
    """Train the spec's model as its `train:` section says, yielding progress. `stop()` true after
    a step: save a checkpoint there and finish (resumable)."""
    needs_train(spec)
    _check_out(out, resume)
    run = prepare(spec, out, data, device)
    yield from steps(run, Local(run), resume, stop)


def needs_train(spec: Spec) -> None:
    if spec.head.train is None:
        raise TrainError("the spec has no `train:` section (data, loss, optimizer ...)", spec.loc(()))


class Local:
    """Where the steps run and the state goes: this one process. A distributed run has its own
    (actions/train_dist.py: the same loop on each rank, rank 0 the main one)."""

    main = True
    """Writes OUT/metrics.jsonl (rank 0 of a distributed run)."""

    def __init__(self, run: Run):
        self.run = run

    def step(self, step: int, window: dict) -> float:
        return _step(self.run, step, window)

    def evaluate(self, data: train_data.Dataset) -> dict:
        return evaluate(self.run, data)

    def save(self, step: int, window: dict) -> str:
        run = self.run
        return train_state.save(run.out, step, run.built.model, run.optimizer, run.record, window,
                                run.train.checkpoint.keep)  # fmt: skip

    def restore(self, path: str) -> train_state.State:
        return train_state.restore(path, self.run.built.model, self.run.optimizer)

    def save_model(self, path: str) -> None:
        save_model(self.run.built, path)


def steps(run: Run, place: Local, resume: bool, stop: Callable[[], bool]) -> Iterator[Event]:
    """The run's loop from step 0 or the newest checkpoint, its steps and state through `place`."""
    out = run.out
    begin = time.perf_counter()
    state = _resume(run, place) if resume and train_state.listed(out) else None
    step = state.step if state else 0
    window = state.window if state else _empty_window(run.train)
    if state is None:
        torch.manual_seed(run.train.seed)  # dropout's draws, after building drew the initialization
    if place.main:
        _truncate_metrics(out, step)
    yield Started(run.total_steps, step, len(run.data), len(run.validation or ()), state and state.path,
                  str(run.built.device))  # fmt: skip
    last = state.path if state else None
    timer = _Timer(step, run.total_steps)
    log_file = open(metrics_path(out), "a", encoding="utf-8") if place.main else contextlib.nullcontext()  # noqa: SIM115
    with log_file as log, train_feed.closing(run):
        while step < run.total_steps:
            loss = place.step(step, window)
            step += 1
            timer.tick(step, window_samples(run, step))
            if step % run.train.log_every == 0 or step == run.total_steps:
                _write(log, {"step": step, "epoch": _epoch(run, step), "lr": _lr(run.train, step - 1, run.total_steps),
                             **_means(window)})  # fmt: skip
                window = _empty_window(run.train)
            yield Stepped(step, run.total_steps, _epoch(run, step), loss, _lr(run.train, step - 1, run.total_steps),
                          timer.rate, timer.eta(step))  # fmt: skip
            if run.validation is not None and (step % run.steps_per_epoch == 0 or step == run.total_steps):
                metrics = place.evaluate(run.validation)
                _write(log, {"step": step, "epoch": _epoch(run, step), "split": "validation", **metrics})
                yield Validated(step, _epoch(run, step), metrics)
            stopping = step < run.total_steps and stop()
            if step % run.train.checkpoint.every == 0 or step == run.total_steps or stopping:
                started = time.perf_counter()
                last = place.save(step, window)
                yield Saved(step, last, time.perf_counter() - started)
            if stopping:
                yield Finished(step, run.total_steps, True, last, None, None, time.perf_counter() - begin)
                return
    model_path = os.path.join(out, "model.safetensors")
    place.save_model(model_path)
    final = place.evaluate(run.validation) if run.validation is not None else None
    train_feed.close(run)
    yield Finished(step, run.total_steps, False, last, model_path, final, time.perf_counter() - begin)


def metrics_path(out: str) -> str:
    return os.path.join(out, "metrics.jsonl")


def prepare(
    spec: Spec, out: str, data: str | None, device: str | None, build: Callable[..., Built] = build_model
) -> Run:
    """Build the model (with `build`: a distributed run builds its own) and read and check the
    data (before anything is written)."""
    train = spec.head.train
    built = build(spec, device=device)
    name, shape = _trained_output(built)
    source = train_data.data_source(built, data)
    dataset = train_data.load(built, source, shape)
    validation = None
    if train.validation is not None and train.validation.file is not None:
        validation = train_data.load(built, train_data.validation_source(built), shape)
    elif train.validation is not None:
        dataset, validation = _split(dataset, train, source)
    batches = (len(dataset) // train.batch_size) if train.drop_last else math.ceil(len(dataset) / train.batch_size)
    if batches == 0:
        raise TrainError(f"{source.path}: {len(dataset):,} training sample(s) make no whole batch of "
                         f"{train.batch_size} (drop_last)", source.where)  # fmt: skip
    per_epoch = math.ceil(batches / train.accumulate)
    total = train.steps if train.steps is not None else train.epochs * per_epoch
    record = {"spec": train_data.recorded(spec.data), "data": train_data.fingerprint(source.path)}
    return Run(built, train, out, dataset, validation, name, per_epoch, total, record)


def check_files(spec: Spec, data: str | None) -> int:
    """What `prepare` checks from the headers alone (the trained output; the data and validation
    files' tensors, shapes and dtypes; the validation split), on a meta build: a distributed run's
    parent refuses bad files before any process starts. The values are the ranks' to check (they
    read them). Returns the number of training samples."""
    train = spec.head.train.model_copy(update={"stream": True})  # header checks only: nothing read
    spec = dataclasses.replace(spec, head=spec.head.model_copy(update={"train": train}))
    built = build_model(spec, device="meta")
    _, shape = _trained_output(built)
    source = train_data.data_source(built, data)
    dataset = train_data.load(built, source, shape)
    if train.validation is not None and train.validation.file is not None:
        train_data.load(built, train_data.validation_source(built), shape)
    elif train.validation is not None:
        dataset, _ = _split(dataset, train, source)
    return len(dataset)


def _trained_output(built: Built) -> tuple[str, tuple]:
    """The name and shape of the output the loss trains, checked to be scores."""
    name = _output_name(built, built.spec.head.train)
    if not built.outputs[name][1].is_floating_point:
        raise TrainError(f"the model's output '{name}' is {built.outputs[name][1]}, not scores a loss can train",
                         built.spec.loc(("model",)))  # fmt: skip
    return name, built.outputs[name][0]


def _output_name(built: Built, train: TrainSpec) -> str:
    names = list(built.outputs)
    if train.output is not None:
        if train.output not in names:
            raise TrainError(f"the model has no output '{train.output}' (its outputs: {', '.join(names)})",
                             built.spec.loc(("train", "output")))  # fmt: skip
        return train.output
    if len(names) > 1:
        raise TrainError(f"the model has {len(names)} outputs ({', '.join(names)}): say which one is trained with "
                         "`output:`", built.spec.loc(("train",)))  # fmt: skip
    return names[0]


def _split(dataset: train_data.Dataset, train: TrainSpec, source: train_data.Source):
    """The validation fraction, drawn with the seed (the same samples on every run and resume)."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(train.seed))
    held = max(1, round(len(dataset) * train.validation.fraction))
    if held >= len(dataset):
        raise TrainError(f"{source.path}: {len(dataset):,} sample(s) leave none for training after the validation "
                         "fraction", source.where)  # fmt: skip
    return dataset.subset(order[held:]), dataset.subset(order[:held])


def _check_out(out: str, resume: bool) -> None:
    where = Loc(f"--out {out}")
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError("exists and is not a directory", where)
    found = train_state.listed(out)
    started = os.path.exists(metrics_path(out))
    if resume and not found and not started:  # a run killed before its first checkpoint starts over
        raise InputError(f"no training run to resume in {out} (no checkpoints/, no metrics.jsonl)", where)
    if not resume and (found or started):
        raise InputError("holds a training run already: pass --resume to go on with it, or choose another --out",
                         where)  # fmt: skip
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create: {exc.strerror or exc}", where) from None


SCHEDULE_LENGTH = ("epochs", "steps")
"""What a resumed run may change in the spec: how long it trains (everything else must match)."""


def _resume(run: Run, place: Local) -> train_state.State:
    """Restore the newest checkpoint, refused when it was written by another spec or for other
    data, or when the schedule (which may have grown) is shorter than the steps it has done."""
    path = train_state.listed(run.out)[-1][1]
    saved = train_state.read_run(path)
    found = train_state.differences(_compared(saved), _compared(run.record))
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise TrainError(f"written by another run: {found[0]}{more}; resume with the same spec and data "
                         "(only train.epochs or train.steps may change)", Loc(path))  # fmt: skip
    done = saved["step"]
    if done > run.total_steps:
        raise TrainError(f"has done {done:,} steps, more than the {run.total_steps:,} the spec's schedule now "
                         "trains: resume with a schedule at least as long", Loc(path))  # fmt: skip
    return place.restore(path)


def _compared(record: dict) -> dict:
    """The part of a run's record a resume must match: the spec without its schedule length, the data."""
    spec = record.get("spec")
    if isinstance(spec, dict) and isinstance(spec.get("train"), dict):
        train = {k: v for k, v in spec["train"].items() if k not in SCHEDULE_LENGTH}
        spec = {**spec, "train": train}
    return {"spec": spec, "data": record.get("data")}


def _truncate_metrics(out: str, step: int) -> None:
    """Keep the lines of steps up to `step` (a kill may have left later ones, or half a line)."""
    path = metrics_path(out)
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    kept = []
    for line in lines:
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):
            continue
    write_text_atomic(path, "".join(kept))


def _write(log, line: dict) -> None:
    if log is None:  # not the main rank of a distributed run
        return
    log.write(json.dumps(line) + "\n")
    log.flush()  # for whoever follows the file (tail -f, a plotting script)


# ---------------------------------------------------------------- one step


def _epoch(run: Run, step: int) -> int:
    """The epoch a step (counted from 1) belongs to, from 1."""
    return (step - 1) // run.steps_per_epoch + 1


def _order(run: Run, epoch: int) -> torch.Tensor:
    """The sample order of an epoch (from 0), drawn once per epoch (the last two kept: the
    data-loader's sampler reads steps ahead of the one training)."""
    if run.orders.get(epoch) is None:
        if run.train.shuffle:
            seed = (run.train.seed * 1_000_003 + epoch) % 2**63
            order = torch.randperm(len(run.data), generator=torch.Generator().manual_seed(seed))
        else:
            order = torch.arange(len(run.data))
        run.orders = {e: o for e, o in run.orders.items() if e == epoch - 1} | {epoch: order}
    return run.orders[epoch]


def _batches(run: Run, step: int) -> list[torch.Tensor]:
    """The sample indices of each batch of `step` (from 0)."""
    epoch, within = divmod(step, run.steps_per_epoch)
    order = _order(run, epoch)
    size, accumulate = run.train.batch_size, run.train.accumulate
    usable = len(order) - len(order) % size if run.train.drop_last else len(order)
    starts = range(within * accumulate * size, min((within + 1) * accumulate * size, usable), size)
    return [order[s : s + size] for s in starts]


def window_samples(run: Run, step: int) -> int:
    """The samples of `step` (from 1): the count _batches gives, without slicing the order."""
    within = (step - 1) % run.steps_per_epoch
    count, size, accumulate = len(run.data), run.train.batch_size, run.train.accumulate
    usable = count - count % size if run.train.drop_last else count
    return max(0, min((within + 1) * accumulate * size, usable) - within * accumulate * size)


def _step(run: Run, step: int, window: dict) -> float:
    """One optimizer step (from 0); adds to the window's sums; returns the step's loss."""
    begin_step(run, step)
    batches = _batches(run, step)
    samples = sum(len(b) for b in batches)
    total = 0.0
    for index, batch in zip(batches, train_feed.step(run, step, _batches), strict=True):
        value, out, y = backward(run, run.built.model, step, batch, len(index) / samples)
        total += value * len(index) / samples
        _add(window, run.train, value, len(index), out, y)
    check_finite(run, step, total)
    end_step(run)
    return total


def begin_step(run: Run, step: int) -> None:
    """Training mode, the step's learning rate, no gradients."""
    model = run.built.model
    if not model.training:  # train() walks every module: not on each step
        model.train()
    for group in run.optimizer.param_groups:
        group["lr"] = _lr(run.train, step, run.total_steps)
    run.optimizer.zero_grad(set_to_none=True)


def backward(run: Run, model: nn.Module, step: int, batch: tuple, weight: float):
    """Forward and backward of a batch `(xs, y)` (read by train_feed) through `model`, the loss
    scaled by `weight` (its share of the step); (the loss, the output, the target)."""
    train = run.train
    xs, y = batch
    try:
        with _autocast(run):
            out = named_outputs(model(*xs), run.built.spec.model)[run.output]
        loss = loss_of(train, out.float(), y)
        (loss if weight == 1 else loss * weight).backward()
    except TORCH_FAILURES as exc:  # a batch of one sample through batchnorm, memory ...
        count = len(y)
        hint = "; `drop_last: true` leaves out partial batches" if count < train.batch_size else ""
        raise TrainError(f"step {step + 1} (a batch of {count}) failed: {first_line(exc)}{hint}",
                         run.built.spec.loc(("train",))) from exc  # fmt: skip
    return loss.item(), out.detach(), y


def check_finite(run: Run, step: int, total: float) -> None:
    if not math.isfinite(total):
        saved = train_state.listed(run.out)
        kept = f"the last good checkpoint is {saved[-1][1]}" if saved else "no checkpoint was written before it"
        raise TrainError(f"the loss is {total} at step {step + 1}: stopped; {kept}", Loc(f"--out {run.out}"))


def end_step(run: Run) -> None:
    """Clip the gradients (their total norm: under FSDP the shards' DTensors make it global) and step."""
    if run.train.clip_grad_norm is not None:
        nn.utils.clip_grad_norm_(run.built.model.parameters(), run.train.clip_grad_norm)
    run.optimizer.step()


def _autocast(run: Run):
    if run.train.precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(run.built.device.type, dtype=torch.bfloat16)


def loss_of(train: TrainSpec, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    loss = train.loss
    if loss.kind == "cross_entropy":
        return F.cross_entropy(out, y, label_smoothing=loss.label_smoothing, ignore_index=loss.ignore_index)
    if loss.kind == "next_token":
        scores, ids = out[:, :-1].reshape(-1, out.shape[-1]), y[:, 1:].reshape(-1)
        return F.cross_entropy(scores, ids, label_smoothing=loss.label_smoothing, ignore_index=loss.ignore_index)
    y = y.to(out.dtype)
    if loss.kind == "mse":
        return F.mse_loss(out, y)
    if loss.kind == "l1":
        return F.l1_loss(out, y)
    weight = None if loss.pos_weight is None else torch.tensor(loss.pos_weight, device=out.device)
    return F.binary_cross_entropy_with_logits(out, y, pos_weight=weight)


def _lr(train: TrainSpec, step: int, total: int) -> float:
    """The learning rate of step `step` (from 0): linear warm-up, then the schedule."""
    schedule, peak = train.schedule, train.optimizer.lr
    if step < schedule.warmup_steps:
        return peak * (step + 1) / schedule.warmup_steps
    after = step - schedule.warmup_steps
    if schedule.kind == "step":
        return peak * schedule.gamma ** (after // schedule.every)
    if schedule.kind == "cosine":
        span = max(1, total - schedule.warmup_steps)
        return schedule.min_lr + (peak - schedule.min_lr) * 0.5 * (1 + math.cos(math.pi * min(after, span) / span))
    return peak


def make_optimizer(model: nn.Module, train: TrainSpec) -> torch.optim.Optimizer:
    spec = train.optimizer
    groups = _decay_groups(model, spec)
    if spec.kind == "sgd":
        return torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov)
    kind = torch.optim.Adam if spec.kind == "adam" else torch.optim.AdamW
    return kind(groups, lr=spec.lr, betas=spec.betas, eps=spec.eps)


def _decay_groups(model: nn.Module, spec) -> list[dict]:
    """Trainable parameters with weight decay, and (when decay_norms_and_biases is false) the
    biases and norm layers' parameters without."""
    exempt: set[int] = set()
    if not spec.decay_norms_and_biases:
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                if isinstance(module, NORMS) or name == "bias":
                    exempt.add(id(p))
    params = [p for p in dict.fromkeys(model.parameters()) if p.requires_grad]
    decay = [p for p in params if id(p) not in exempt]
    plain = [p for p in params if id(p) in exempt]
    groups = [{"params": decay, "weight_decay": spec.weight_decay}]
    if plain:
        groups.append({"params": plain, "weight_decay": 0.0})
    return groups


# ---------------------------------------------------------------- metrics


def _empty_window(train: TrainSpec) -> dict:
    return {"samples": 0, "loss": 0.0, "counted": 0, "correct": {name: 0 for name in train.scored()}}


def _add(window: dict, train: TrainSpec, loss: float, samples: int, out: torch.Tensor, y: torch.Tensor) -> None:
    window["samples"] += samples
    window["loss"] += loss * samples
    scored = train.scored()
    if scored:
        counted, correct = _correct(train, out, y, scored)
        window["counted"] += counted
        for name, count in correct.items():
            window["correct"][name] += count


def _correct(train: TrainSpec, out: torch.Tensor, y: torch.Tensor, scored: dict) -> tuple[int, dict]:
    """(positions scored, {metric: positions whose target is among the top k scores}), read back
    in one transfer (each .item() is a synchronization, and a few microseconds on the CPU)."""
    ignore = train.loss.ignore_index
    if _plain_accuracy(train, out, y, scored):
        # the fewest small ops (a per-step cost beside the model's): no class id equals ignore_index,
        # so an ignored position never hits; on the CPU two reads cost less than a stack
        return (y != ignore).sum().item(), dict.fromkeys(scored, (out.argmax(-1) == y).sum().item())
    if train.loss.kind == "next_token":
        out, y = out[:, :-1].reshape(-1, out.shape[-1]), y[:, 1:].reshape(-1)
    else:
        out = out.movedim(1, -1).reshape(-1, out.shape[1])
        y = y.reshape(-1)
    keep = y != ignore
    largest = min(max(scored.values()), out.shape[-1])
    top = out.argmax(-1, keepdim=True) if largest == 1 else out.topk(largest, dim=-1).indices
    hits = top == y[:, None]
    counts = torch.stack([keep.sum()] + [(hits[:, :k].any(dim=1) & keep).sum() for k in scored.values()]).tolist()
    return counts[0], dict(zip(scored, counts[1:], strict=True))


def _plain_accuracy(train: TrainSpec, out: torch.Tensor, y: torch.Tensor, scored: dict) -> bool:
    """Accuracy alone, of [N, C] scores against [N] class ids, on the CPU, ignore_index not a class."""
    return (
        train.loss.kind != "next_token" and out.dim() == 2 and y.dim() == 1 and out.device.type == "cpu"
        and list(scored.values()) == [1] and not 0 <= train.loss.ignore_index < out.shape[-1]
    )  # fmt: skip


def _means(window: dict) -> dict:
    out = {"loss": window["loss"] / max(1, window["samples"])}
    for name, count in window["correct"].items():
        out[name] = count / max(1, window["counted"])
    return out


def evaluate(run: Run, data: train_data.Dataset) -> dict:
    """The metrics on `data` (eval mode, no gradients; draws nothing from the RNG)."""
    return _means(evaluated(run, data, run.built.model))


def evaluated(run: Run, data: train_data.Dataset, model: nn.Module, part: Callable | None = None) -> dict:
    """The metric sums over `data` (a window), batch by batch; `part(index)` -> (the samples this
    process runs, whether they count): a rank's slice of each batch."""
    train = run.train
    window = _empty_window(train)
    model.eval()
    with torch.no_grad():
        for (xs, y), counts in train_feed.validation(run, data, part):
            with _autocast(run):
                out = named_outputs(model(*xs), run.built.spec.model)[run.output]
            out = out.float()
            if counts:
                _add(window, train, loss_of(train, out, y).item(), len(y), out, y)
    model.train()
    return window


class _Timer:
    """Samples per second over the steps of this process, and the time left at that rate."""

    def __init__(self, step: int, total: int):
        self.first, self.total = step, total
        self.start = time.perf_counter()
        self.samples = 0
        self.rate = 0.0

    def tick(self, step: int, samples: int) -> None:
        self.samples += samples
        elapsed = time.perf_counter() - self.start
        self.rate = self.samples / elapsed if elapsed > 0 else 0.0
        self.per_step = elapsed / max(1, step - self.first)

    def eta(self, step: int) -> float:
        return self.per_step * (self.total - step)
