"""Steps per second of `netcfg train` against a hand-written PyTorch loop (target: within 3%).

The same model (the digits CNN of examples/digits/cnn.yaml; the loop's copy is a hand-written
nn.Sequential given the netcfg model's initial weights), the same data, batch, loss, optimizer,
schedule, clipping and per-step accuracy. In one process with one thread count, interleaved:
`--steps` steps of netcfg's training generator (events pulled from `netcfg.actions.train.train`,
so its logging, metrics and bookkeeping are timed; no checkpoint falls inside a timed block),
then as many steps of the loop, then netcfg again, ... `--rounds` pairs. The figure is the median
of the per-pair ratios netcfg time / loop time (a pair shares the machine's state of the moment).
Also: the cost of one resumable checkpoint write (durable, fsynced), median of `--saves`.

    python benchmarks/bench_train.py [--threads 1] [--rounds 30] [--steps 10] [--clock thread_time] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netcfg.actions import train as actions  # noqa: E402
from netcfg.actions import train_state  # noqa: E402
from netcfg.io.reading import load_tensors  # noqa: E402
from netcfg.spec.loader import load_spec  # noqa: E402

SPEC = ROOT / "examples" / "digits" / "cnn.yaml"


def twin(state: dict) -> nn.Module:
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.2), nn.Linear(512, 10),
    )  # fmt: skip
    model.load_state_dict(state)
    return model


class Loop:
    """The plain loop: shuffled batches of 64, AdamW (no decay on norms and biases), cosine after
    a linear warm-up, label smoothing, clipping, loss and accuracy read every step."""

    def __init__(self, model: nn.Module, total: int):
        data = load_tensors(SPEC.parent / "digits.safetensors")
        self.x, self.y = data["images"], data["labels"]
        self.model, self.total, self.step_index = model, total, 0
        exempt = [p for n, p in model.named_parameters() if n.endswith("bias") or n.split(".")[0] in ("1", "4")]
        decay = [p for n, p in model.named_parameters() if not any(p is q for q in exempt)]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": exempt, "weight_decay": 0.0}],
                                     lr=0.003)  # fmt: skip
        self.order = torch.randperm(len(self.x))
        self.position = 0

    def lr(self, step: int) -> float:
        if step < 20:
            return 0.003 * (step + 1) / 20
        return 0.003 * 0.5 * (1 + math.cos(math.pi * (step - 20) / (self.total - 20)))

    def steps(self, count: int) -> None:
        self.model.train()
        for _ in range(count):
            if self.position >= len(self.order):
                self.order, self.position = torch.randperm(len(self.x)), 0
            index = self.order[self.position : self.position + 64]
            self.position += 64
            for group in self.opt.param_groups:
                group["lr"] = self.lr(self.step_index)
            self.opt.zero_grad(set_to_none=True)
            out = self.model(self.x[index])
            loss = F.cross_entropy(out, self.y[index], label_smoothing=0.05)
            loss.backward()
            nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
            loss.item(), (out.argmax(1) == self.y[index]).sum().item()
            self.step_index += 1


def measure(rounds: int, steps: int, clock) -> tuple[list[float], list[float]]:
    total = rounds * steps + steps  # one block of warm-up each
    overrides = [f"train.steps={total}", "train.epochs=null", "train.validation=null",
                 f"train.checkpoint.every={total}", "train.metrics=[loss, accuracy]"]  # fmt: skip
    spec = load_spec(SPEC, overrides)
    with tempfile.TemporaryDirectory() as out:
        events = actions.train(spec, out)
        started = next(events)
        assert started.total_steps == total
        loop = Loop(twin(actions.build_model(spec).model.state_dict()), total)

        def netcfg_block() -> float:
            began = clock()
            for _ in range(steps):
                next(events)
            return clock() - began

        def loop_block() -> float:
            began = clock()
            loop.steps(steps)
            return clock() - began

        netcfg_block(), loop_block()  # warm-up
        pairs = [(netcfg_block(), loop_block()) for _ in range(rounds)]
        events.close()
    return [a for a, _ in pairs], [b for _, b in pairs]


def checkpoint_cost(saves: int) -> float:
    spec = load_spec(SPEC)
    run = actions.prepare(spec, "unused", None, None)
    times = []
    with tempfile.TemporaryDirectory() as out:
        for step in range(1, saves + 1):
            began = time.perf_counter()
            train_state.save(out, step, run.built.model, run.optimizer, run.record, {}, keep=2)
            times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--saves", type=int, default=20)
    parser.add_argument(
        "--clock",
        choices=["perf_counter", "thread_time"],
        default="perf_counter",
        help="wall time, or this thread's CPU time (steadier on a busy machine; one thread only)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    netcfg_times, loop_times = measure(args.rounds, args.steps, getattr(time, args.clock))
    ratios = [a / b for a, b in zip(netcfg_times, loop_times, strict=True)]
    ratio = statistics.median(ratios)
    result = {
        "threads": args.threads, "clock": args.clock, "rounds": args.rounds, "steps_per_block": args.steps,
        "netcfg_steps_per_s": args.steps / statistics.median(netcfg_times),
        "loop_steps_per_s": args.steps / statistics.median(loop_times),
        "median_ratio": ratio, "ratio_min": min(ratios), "ratio_max": max(ratios),
        "checkpoint_ms": checkpoint_cost(args.saves) * 1e3, "within_3pct": ratio <= 1.03,
    }  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} pairs of {args.steps} steps, "
            f"clock {args.clock}"
        )
        print(f"netcfg train {result['netcfg_steps_per_s']:.1f} steps/s, hand-written loop "
              f"{result['loop_steps_per_s']:.1f} steps/s; median ratio of pairs {ratio:.3f} "
              f"(min {min(ratios):.3f}, max {max(ratios):.3f}) {'ok' if ratio <= 1.03 else 'OFF by > 3%'}")  # fmt: skip
        print(f"one resumable checkpoint (model + AdamW state + RNG, fsynced): {result['checkpoint_ms']:.1f} ms")
    sys.exit(0 if result["within_3pct"] else 1)


if __name__ == "__main__":
    main()
