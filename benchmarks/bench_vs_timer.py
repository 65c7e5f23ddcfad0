"""Does `netcfg bench` measure what torch.utils.benchmark measures?

For each case, in one process with the same thread count: netcfg's bench median for the
spec, and torch.utils.benchmark.Timer(...).adaptive_autorange() medians for the same
netcfg-built model (a check of the measurement alone) and for the hand-written twin
(benchmarks/twins.py) given the same weights and input (the comparison the target is
about: within 10%). Timer runs with one thread unless told otherwise; both get --threads.

    python benchmarks/bench_vs_timer.py [--threads 1] [--min-time 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.utils.benchmark import Timer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.twins import gpt2, resnet  # noqa: E402
from netcfg.actions.bench import BenchConfig, bench  # noqa: E402
from netcfg.building.builder import build_spec, sample_input  # noqa: E402
from netcfg.spec.loader import load_spec  # noqa: E402

CASES = [
    ("mlp", "configs/mlp.yaml", [], None),
    ("resnet18 batch 1", "configs/resnet18.yaml", [], lambda: resnet("basic", [2, 2, 2, 2])),
    ("gpt2 64 tokens", "configs/gpt2.yaml", [], gpt2),
]


def twin_of(spec_path: str, overrides: list, make) -> tuple[torch.nn.Module, torch.Tensor]:
    spec = load_spec(ROOT / spec_path, overrides)
    built = build_spec(spec, device="cpu", seed=0)
    if make is None:
        model = built.model  # the netcfg model is already plain nn.Sequential of nn.Linear/ReLU
    else:
        model = make()
        model.load_state_dict(built.model.state_dict(), strict=False)
    return model.eval(), sample_input(spec, "cpu")


def timer_median(model: torch.nn.Module, x: torch.Tensor, threads: int, min_time: float) -> float:
    timer = Timer(stmt="f(x)", globals={"f": torch.inference_mode()(model), "x": x}, num_threads=threads)
    return timer.adaptive_autorange(threshold=0.05, min_run_time=min_time).median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-time", type=float, default=2.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = []
    for name, path, overrides, make in CASES:
        spec = load_spec(ROOT / path, overrides)
        config = BenchConfig(device="cpu", threads=args.threads, min_time=args.min_time, max_time=10 * args.min_time)
        netcfg_median = bench(spec, config).median
        own = build_spec(spec, device="cpu", seed=0).model.eval()
        same = timer_median(own, sample_input(spec, "cpu"), args.threads, args.min_time)
        model, x = twin_of(path, overrides, make)
        reference = timer_median(model, x, args.threads, args.min_time)
        ratio = netcfg_median / reference
        rows.append({"case": name, "netcfg_ms": netcfg_median * 1e3, "timer_same_ms": same * 1e3,
                     "timer_twin_ms": reference * 1e3, "ratio_same": netcfg_median / same, "ratio": ratio,
                     "within_10pct": abs(ratio - 1) <= 0.10})  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"torch {torch.__version__}, {args.threads} thread(s), min time {args.min_time} s each")
        print(f"{'case':20s} {'netcfg bench ms':>16s} {'Timer same ms':>14s} {'ratio':>6s} {'Timer twin ms':>14s} "
              f"{'ratio':>6s}")  # fmt: skip
        for r in rows:
            mark = "ok" if r["within_10pct"] else "OFF by more than 10%"
            print(f"{r['case']:20s} {r['netcfg_ms']:16.3f} {r['timer_same_ms']:14.3f} {r['ratio_same']:6.3f} "
                  f"{r['timer_twin_ms']:14.3f} {r['ratio']:6.3f}  {mark}")  # fmt: skip
    sys.exit(0 if all(r["within_10pct"] for r in rows) else 1)


if __name__ == "__main__":
    main()
