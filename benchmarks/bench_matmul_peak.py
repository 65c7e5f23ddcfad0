"""Achieved TFLOP/s of a spec that is one large bfloat16 linear layer, against the same
matmul called directly (the card's measured peak): netcfg should add nothing measurable.

    python benchmarks/bench_matmul_peak.py [--device cuda] [--n 8192] [--min-time 2]

On the CPU use a smaller --n (e.g. 1024).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netcfg.actions.bench import BenchConfig, _sync, _time_block, bench  # noqa: E402
from netcfg.spec.loader import load_spec  # noqa: E402


def raw_seconds(n: int, device: torch.device, min_time: float) -> float:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    w = torch.randn(n, n, device=device, dtype=torch.bfloat16)

    def step():
        return torch.nn.functional.linear(a, w)

    for _ in range(5):
        step()
    _sync(device)
    best = []
    import time

    start = time.perf_counter()
    while time.perf_counter() - start < min_time or len(best) < 10:
        best.append(_time_block(step, device, 5))
    return sorted(best)[len(best) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n", type=int, default=8192)
    parser.add_argument("--min-time", type=float, default=2.0)
    args = parser.parse_args()
    device = torch.device(args.device)
    flops = 2 * args.n**3
    raw = raw_seconds(args.n, device, args.min_time)
    spec = load_spec(ROOT / "benchmarks/specs/linear_bf16.yaml", [f"vars.n={args.n}"])
    result = bench(spec, BenchConfig(device=args.device, min_time=args.min_time, max_time=10 * args.min_time))
    name = result.device_name
    print(f"{name}, torch {torch.__version__}, bfloat16 [{args.n}, {args.n}] x [{args.n}, {args.n}]")
    print(f"raw F.linear      {raw * 1e3:9.3f} ms  {flops / raw / 1e12:8.2f} TFLOP/s")
    print(f"netcfg bench      {result.median * 1e3:9.3f} ms  {flops / result.median / 1e12:8.2f} TFLOP/s")
    print(f"netcfg / peak     {raw / result.median:9.3f}")


if __name__ == "__main__":
    main()
