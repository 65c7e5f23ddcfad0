"""Forward-pass overhead of netcfg-built models against hand-written PyTorch twins.

Where per-layer overhead shows: deep, narrow networks at batch 1, where each layer does
almost no arithmetic and the Python cost of calling it dominates.

  sequential  benchmarks/specs/deep_sequential.yaml: 100 x [linear 32 -> relu] (200 layers),
              against the same nn.Sequential nesting written by hand.
  residual    benchmarks/specs/deep_residual.yaml: 50 graph blocks x + fc2(relu(fc1(x)))
              (200 graph nodes), against a hand-written block module with that forward.

Each twin takes the netcfg model's parameter tensors (strict load_state_dict with
assign=True: the same memory, so no cache-layout difference) and must give the same
output (torch.equal) before anything is timed.

Timing: eval mode, torch.no_grad, --threads intra-op threads (default 1), --warmup calls,
then --rounds rounds of --calls calls of each model, netcfg and twin alternating call by
call (ABBA order), every call timed with time.perf_counter (--clock thread_time: the
thread's CPU time instead, which leaves out time spent descheduled; steadier on a busy
machine). A round's figure for a model is the median of its single-call times (robust
to preemptions); the table gives the median over rounds and its interquartile range. ratio is the median
of the per-round paired ratios netcfg / twin (both measured in the same moments, so a
busy machine's slow-downs largely cancel), with their IQR. The JSON also has the ratio
of the medians and the mean-based figures (total time / calls, preemptions included).

    python benchmarks/bench_forward.py                  # table
    python benchmarks/bench_forward.py --json           # machine-readable
    python benchmarks/bench_forward.py --case residual --rounds 50 --threads 2
    python benchmarks/bench_forward.py --control --clock thread_time   # + A/A rows, CPU time
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import netcfg

SPECS = Path(__file__).resolve().parent / "specs"
TARGET_RATIO = 1.03


# ---------------------------------------------------------------- hand-written twins


def sequential_twin(depth: int, width: int) -> nn.Module:
    """What the sequential spec describes, written by hand: 0..depth-1, each (fc, act)."""
    return nn.Sequential(*[nn.Sequential(OrderedDict(fc=nn.Linear(width, width), act=nn.ReLU())) for _ in range(depth)])


def flat_sequential_twin(depth: int, width: int) -> nn.Module:
    """The same network as one flat nn.Sequential (Linear, ReLU, Linear, ...): no nesting."""
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act(self.fc1(x)))


def residual_twin(depth: int, width: int) -> nn.Module:
    return nn.Sequential(*[ResidualBlock(width) for _ in range(depth)])


def flat_state_dict(nested: dict, depth: int) -> dict:
    """Keys i.fc.weight -> (2i).weight, for flat_sequential_twin."""
    out = {}
    for key, value in nested.items():
        block, _, rest = key.split(".", 2)
        out[f"{2 * int(block)}.{rest}"] = value
    return out


# ---------------------------------------------------------------- timing


CLOCKS = {"perf_counter": time.perf_counter, "thread_time": time.thread_time}


def timed_round(
    model: Callable, twin: Callable, x: torch.Tensor, calls: int, clock: Callable[[], float] = time.perf_counter
) -> tuple[list[float], list[float]]:
    """`calls` calls of each, alternating one by one (ABBA order); the seconds of every call."""
    ours: list[float] = []
    theirs: list[float] = []
    for i in range(calls):
        if i % 2 == 0:
            t0 = clock()
            model(x)
            t1 = clock()
            twin(x)
            t2 = clock()
            ours.append(t1 - t0)
            theirs.append(t2 - t1)
        else:
            t0 = clock()
            twin(x)
            t1 = clock()
            model(x)
            t2 = clock()
            theirs.append(t1 - t0)
            ours.append(t2 - t1)
    return ours, theirs


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def compare(
    model: nn.Module, twin: nn.Module, x: torch.Tensor, rounds: int, calls: int, warmup: int, clock: str
) -> dict:
    """Interleaved timing of model and twin: per round, the median and the mean single-call time of each."""
    for _ in range(warmup):
        model(x)
        twin(x)
    rounds_ours: list[tuple[float, float]] = []
    rounds_theirs: list[tuple[float, float]] = []
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            ours, theirs = timed_round(model, twin, x, calls, CLOCKS[clock])
            rounds_ours.append((statistics.median(ours), statistics.fmean(ours)))
            rounds_theirs.append((statistics.median(theirs), statistics.fmean(theirs)))
    finally:
        if was_enabled:
            gc.enable()
    return summarize(rounds_ours, rounds_theirs)


def summarize(ours: list[tuple[float, float]], theirs: list[tuple[float, float]]) -> dict:
    n1, n2, n3 = quartiles([m for m, _ in ours])
    t1, t2, t3 = quartiles([m for m, _ in theirs])
    r1, r2, r3 = quartiles([a[0] / b[0] for a, b in zip(ours, theirs, strict=True)])
    mean_ours = statistics.median([m for _, m in ours])
    mean_theirs = statistics.median([m for _, m in theirs])
    return {
        "netcfg_us": n2 * 1e6,
        "netcfg_iqr_us": [n1 * 1e6, n3 * 1e6],
        "twin_us": t2 * 1e6,
        "twin_iqr_us": [t1 * 1e6, t3 * 1e6],
        "ratio": r2,
        "ratio_iqr": [r1, r3],
        "ratio_of_medians": n2 / t2,
        "netcfg_mean_us": mean_ours * 1e6,
        "twin_mean_us": mean_theirs * 1e6,
        "ratio_of_means": mean_ours / mean_theirs,
        "rounds_netcfg_us": [m * 1e6 for m, _ in ours],
        "rounds_twin_us": [m * 1e6 for m, _ in theirs],
    }


# ---------------------------------------------------------------- cases


def load_and_check(model: nn.Module, twin: nn.Module, state: dict, x: torch.Tensor, name: str) -> None:
    # assign=True: the twin uses the netcfg model's own parameter tensors, so both read the
    # same memory and neither gains from a different cache or allocation layout.
    twin.load_state_dict(state, strict=True, assign=True)
    twin.eval()
    shared = {p.data_ptr() for p in model.parameters()}
    if any(p.data_ptr() not in shared for p in twin.parameters()):
        raise SystemExit(f"{name}: the twin did not take the netcfg model's parameter tensors")
    with torch.no_grad():
        want, got = model(x), twin(x)
    if not torch.equal(want, got):
        raise SystemExit(f"{name}: twin output differs from netcfg's (max |diff| {(want - got).abs().max():.3g})")


def run_case(case: str, args: argparse.Namespace) -> list[dict]:
    spec = SPECS / f"deep_{case}.yaml"
    model = netcfg.build(spec, device="cpu", seed=0, overrides=args.set).eval()
    width = model[0].fc.in_features if case == "sequential" else model[0].fc1.in_features
    depth = len(model)
    layers = sum(1 for m in model.modules() if next(m.children(), None) is None)  # leaves: the layers
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, width, generator=gen)
    state = model.state_dict()

    make_twin = sequential_twin if case == "sequential" else residual_twin
    # (row name, measured model, reference twin, state for the twin, counts against the target)
    runs: list[tuple[str, nn.Module, nn.Module, dict, bool]] = [(case, model, make_twin(depth, width), state, True)]
    if case == "sequential" and args.flat:
        flat = flat_sequential_twin(depth, width)
        runs.append(("sequential vs flat twin", model, flat, flat_state_dict(state, depth), False))
    if args.control:
        # A/A: a second twin against the twin. Its ratio shows what layout and noise alone give.
        other = make_twin(depth, width)
        load_and_check(model, other, state, x, f"{case} control")
        runs.append((f"{case} A/A control", other, make_twin(depth, width), state, False))

    rows = []
    for name, subject, twin, twin_state, counts in runs:
        load_and_check(model, twin, twin_state, x, name)
        with torch.no_grad():
            result = compare(subject, twin, x, args.rounds, args.calls, args.warmup, args.clock)
        result.update(case=name, spec=str(spec.relative_to(SPECS.parent.parent)))
        result.update(layers=layers, depth=depth, width=width)
        result["overhead_per_layer_ns"] = (result["netcfg_us"] - result["twin_us"]) * 1e3 / layers
        result["target"] = TARGET_RATIO if counts else None
        result["pass"] = result["ratio"] <= TARGET_RATIO if counts else None
        rows.append(result)
    return rows


# ---------------------------------------------------------------- output


def table(rows: list[dict]) -> str:
    head = (
        f"{'case':<24} {'layers':>6} {'netcfg us/call':>15} {'IQR':>15} {'twin us/call':>13} {'IQR':>15} "
        f"{'ratio':>6} {'ratio IQR':>13} {'ns/layer':>9}  target"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        ni, ti, ri = r["netcfg_iqr_us"], r["twin_iqr_us"], r["ratio_iqr"]
        lines.append(
            f"{r['case']:<24} {r['layers']:>6} {r['netcfg_us']:>15.1f} {f'{ni[0]:.1f}-{ni[1]:.1f}':>15} "
            f"{r['twin_us']:>13.1f} {f'{ti[0]:.1f}-{ti[1]:.1f}':>15} {r['ratio']:>6.3f} "
            f"{f'{ri[0]:.3f}-{ri[1]:.3f}':>13} {r['overhead_per_layer_ns']:>9.0f}  "
            + (
                f"{'<=' if r['pass'] else '> '} {r['target']:.2f} {'ok' if r['pass'] else 'MISS'}"
                if r["target"]
                else "-"
            )
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=["sequential", "residual", "all"], default="all")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--rounds", type=int, default=30, help="interleaved timing rounds (default 30)")
    parser.add_argument("--calls", type=int, default=200, help="forward calls per round and model (default 200)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed calls of each model first (default 50)")
    parser.add_argument("--no-flat", dest="flat", action="store_false", help="skip the flat nn.Sequential reference")
    parser.add_argument("--control", action="store_true", help="add A/A rows: a second twin against the twin")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="spec override, e.g. vars.depth=20"
    )
    parser.add_argument(
        "--clock",
        choices=list(CLOCKS),
        default="perf_counter",
        help="perf_counter: wall time (default); thread_time: this thread's CPU time, which leaves out the "
        "time the thread waits while other processes run",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--rounds-detail", action="store_true", help="with --json: include every round's timings")
    args = parser.parse_args(argv)
    if args.rounds < 4:
        parser.error("--rounds must be at least 4 (quartiles)")

    torch.set_num_threads(args.threads)
    cases = ["sequential", "residual"] if args.case == "all" else [args.case]
    rows = [row for case in cases for row in run_case(case, args)]
    env = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "calls": args.calls,
        "warmup": args.warmup,
        "clock": args.clock,
    }
    if args.json:
        if not args.rounds_detail:
            for r in rows:
                del r["rounds_netcfg_us"], r["rounds_twin_us"]
        json.dump({"env": env, "results": rows}, sys.stdout, indent=2)
        print()
    else:
        print(
            f"torch {env['torch']}, python {env['python']}, {env['threads']} thread(s), "
            f"{args.rounds} rounds x {args.calls} calls, batch 1, clock {args.clock}; "
            "per-call times in microseconds (median, IQR)"
        )
        print(table(rows))
    return 0 if all(r["pass"] for r in rows if r["target"]) else 1


if __name__ == "__main__":
    sys.exit(main())
