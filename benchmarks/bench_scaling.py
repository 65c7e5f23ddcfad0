"""Scaling of `netcfg bench --nproc 2` against one process, DDP and FSDP, measured in pairs.

`netcfg bench --nproc 2` times one process, then two: run one after the other, their ratio swings
with whatever else the machine does in between. Here each pair is a one-process run and a
two-process run back to back (`--pairs` pairs, the order alternating between pairs), and the
figures are medians over pairs: the per-pair scaling efficiency (samples/s of 2 processes over
2 x samples/s of one: weak scaling, each rank runs the spec's batch) and the per-rank state
(parameters + gradients + AdamW moments) and peak memory growth. Each run is the same code path as
`netcfg bench SPEC --mode train --nproc N --strategy S` (netcfg.actions.distributed.bench), cores/N
threads per rank. A pair where other processes kept more than 0.25 cores busy is reported, and
left out of the medians unless every pair was.

    python benchmarks/bench_scaling.py [--specs configs/resnet18.yaml,configs/gpt2.yaml]
        [--strategies ddp,fsdp] [--pairs 3] [--min-time 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netcfg.actions import distributed  # noqa: E402
from netcfg.actions.bench import BenchConfig  # noqa: E402
from netcfg.spec.loader import load_spec  # noqa: E402

BUSY = 0.25  # cores' worth of CPU others may use during a run before its pair is set aside


def measure(spec_path: str, strategy: str, pairs: int, min_time: float) -> dict:
    spec = load_spec(ROOT / spec_path)
    config = BenchConfig(device="cpu", mode="train", warmup=2, min_time=min_time, max_time=max(10.0, 4 * min_time))
    rows = []
    for i in range(pairs):
        order = (1, 2) if i % 2 == 0 else (2, 1)
        runs = {n: distributed.bench(spec, config, n, strategy) for n in order}
        one, two = runs[1], runs[2]
        busy = max(r.others_busy or 0.0 for r in (one, two))
        rows.append({
            "efficiency": two.samples_per_s / (2 * one.samples_per_s),
            "step_ms_1": one.median * 1000, "step_ms_2": two.median * 1000,
            "samples_per_s_1": one.samples_per_s, "samples_per_s_2": two.samples_per_s,
            "state_mib_1": max(s.state_bytes for s in one.ranks) / 2**20,
            "state_mib_2": max(s.state_bytes for s in two.ranks) / 2**20,
            "peak_mib_1": max(s.peak_memory_bytes for s in one.ranks) / 2**20,
            "peak_mib_2": max(s.peak_memory_bytes for s in two.ranks) / 2**20,
            "others_busy": busy, "quiet": busy <= BUSY,
        })  # fmt: skip
    kept = [r for r in rows if r["quiet"]] or rows
    summary = {key: statistics.median(r[key] for r in kept) for key in rows[0] if key not in ("quiet",)}
    return {"spec": spec_path, "strategy": strategy, "pairs": len(rows), "quiet_pairs": sum(r["quiet"] for r in rows),
            "median": summary, "rows": rows}  # fmt: skip


def table(results: list[dict]) -> str:
    head = ("spec", "strategy", "pairs (quiet)", "step ms 1 -> 2", "samples/s 1 -> 2", "efficiency",
            "state/rank MiB 1 -> 2", "peak/rank MiB 1 -> 2")  # fmt: skip
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in results:
        m = r["median"]
        lines.append(" | ".join([
            Path(r["spec"]).stem, r["strategy"], f"{r['pairs']} ({r['quiet_pairs']})",
            f"{m['step_ms_1']:.0f} -> {m['step_ms_2']:.0f}",
            f"{m['samples_per_s_1']:.2f} -> {m['samples_per_s_2']:.2f}",
            f"{100 * m['efficiency']:.0f}%", f"{m['state_mib_1']:.0f} -> {m['state_mib_2']:.0f}",
            f"{m['peak_mib_1']:.0f} -> {m['peak_mib_2']:.0f}",
        ]))  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", default="configs/resnet18.yaml,configs/gpt2.yaml")
    parser.add_argument("--strategies", default="ddp,fsdp")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--min-time", type=float, default=1.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [
        measure(spec, strategy, args.pairs, args.min_time)
        for spec in args.specs.split(",")
        for strategy in args.strategies.split(",")
    ]
    print(json.dumps(results, indent=2) if args.json else table(results))


if __name__ == "__main__":
    main()
