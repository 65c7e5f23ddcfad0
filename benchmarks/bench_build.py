"""Build time: netcfg building a spec vs constructing its hand-written twin.

    python benchmarks/bench_build.py                  # resnet152 and gpt2, 5 repeats, a table
    python benchmarks/bench_build.py --repeats 9 --json
    python benchmarks/bench_build.py --profile 25     # where netcfg's build time goes (cProfile)

netcfg: `netcfg.build(configs/<model>.yaml, device="cpu", seed=0)`, spec loading included.
Twin: `torch.manual_seed(0)` then the constructor from benchmarks/twins.py (which runs the
same initialization: torchvision's for ResNet, GPT-2's for GPT-2). Both run in this one
process, interleaved (the order alternates each repeat), after one untimed warm-up of each
(imports, first allocations); the table gives medians of wall time and of the process's CPU
time (steadier on a shared machine) and netcfg / twin for each.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import platform
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks` and `netcfg` importable from the checkout
    sys.path.insert(0, str(ROOT))

import netcfg  # noqa: E402
from benchmarks.twins import RESNET_LAYOUTS, gpt2, resnet_by_name  # noqa: E402

CONFIGS = ROOT / "configs"
MODELS = ("resnet152", "gpt2")
TARGET_RATIO = 1.05


def netcfg_builder(name: str) -> Callable[[], nn.Module]:
    path = CONFIGS / f"{name}.yaml"
    return lambda: netcfg.build(path, device="cpu", seed=0)


def twin_builder(name: str) -> Callable[[], nn.Module]:
    make = gpt2 if name == "gpt2" else (lambda: resnet_by_name(name))

    def build() -> nn.Module:
        torch.manual_seed(0)
        return make()

    return build


def timed(build: Callable[[], nn.Module]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) for one build."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    model = build()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    del model
    gc.collect()
    return wall, cpu


def measure(names: list[str], repeats: int, warmup: int) -> list[dict]:
    builders = {name: {"netcfg": netcfg_builder(name), "twin": twin_builder(name)} for name in names}
    wall: dict[tuple[str, str], list[float]] = {(n, k): [] for n in names for k in ("netcfg", "twin")}
    cpu: dict[tuple[str, str], list[float]] = {key: [] for key in wall}
    for _ in range(warmup):
        for name in names:
            for kind in ("netcfg", "twin"):
                timed(builders[name][kind])
    for r in range(repeats):
        order = ("netcfg", "twin") if r % 2 == 0 else ("twin", "netcfg")
        for name in names:
            for kind in order:
                w, c = timed(builders[name][kind])
                wall[name, kind].append(w)
                cpu[name, kind].append(c)
    results = []
    for name in names:
        med = {key: statistics.median(v) for key, v in wall.items() if key[0] == name}
        cpu_med = {key: statistics.median(v) for key, v in cpu.items() if key[0] == name}
        results.append({
            "model": name,
            "netcfg_median_s": med[name, "netcfg"],
            "twin_median_s": med[name, "twin"],
            "ratio": med[name, "netcfg"] / med[name, "twin"],
            "netcfg_cpu_median_s": cpu_med[name, "netcfg"],
            "twin_cpu_median_s": cpu_med[name, "twin"],
            "cpu_ratio": cpu_med[name, "netcfg"] / cpu_med[name, "twin"],
            "netcfg_s": wall[name, "netcfg"],
            "twin_s": wall[name, "twin"],
            "netcfg_cpu_s": cpu[name, "netcfg"],
            "twin_cpu_s": cpu[name, "twin"],
        })  # fmt: skip
    return results


def table(results: list[dict], repeats: int) -> str:
    threads = torch.get_num_threads()
    lines = [
        f"build time, median of {repeats}, seconds (torch {torch.__version__}, {threads} "
        f"thread{'' if threads == 1 else 's'})",
        f"{'':<10} {'--------- wall ---------':>25}   {'---- CPU (process) -----':>25}   {'wall min..max':>29}",
        f"{'model':<10} {'netcfg':>8} {'twin':>8} {'ratio':>7}   {'netcfg':>8} {'twin':>8} {'ratio':>7}"
        f"   {'netcfg':>14} {'twin':>14}",
    ]
    for r in results:
        a, b = r["netcfg_s"], r["twin_s"]
        flag = "" if r["ratio"] <= TARGET_RATIO else f"  (ratio > {TARGET_RATIO})"
        lines.append(
            f"{r['model']:<10} {r['netcfg_median_s']:>8.3f} {r['twin_median_s']:>8.3f} {r['ratio']:>7.3f}"
            f"   {r['netcfg_cpu_median_s']:>8.3f} {r['twin_cpu_median_s']:>8.3f} {r['cpu_ratio']:>7.3f}"
            f"   {min(a):>6.3f}..{max(a):<6.3f} {min(b):>6.3f}..{max(b):<6.3f}{flag}"
        )
    return "\n".join(lines)


def profile(names: list[str], top: int) -> str:
    """cProfile of one netcfg build per model (after a warm-up build), top functions by own time
    and by cumulative time."""
    out = io.StringIO()
    for name in names:
        build = netcfg_builder(name)
        timed(build)
        profiler = cProfile.Profile()
        profiler.enable()
        model = build()
        profiler.disable()
        del model
        for key in ("tottime", "cumulative"):
            out.write(f"\n==== {name}: netcfg build, by {key} ====\n")
            pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(key).print_stats(top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed builds of each kind per model (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed builds of each kind first (default 1)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated (default {','.join(MODELS)})")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: PyTorch's choice)")
    parser.add_argument("--profile", type=int, metavar="TOP", help="instead: cProfile netcfg's builds, top TOP rows")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    for name in names:
        if not (CONFIGS / f"{name}.yaml").is_file():
            parser.error(f"no spec configs/{name}.yaml")
        if name != "gpt2" and name not in RESNET_LAYOUTS:
            parser.error(f"no twin for {name!r} (one of {', '.join([*RESNET_LAYOUTS, 'gpt2'])})")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.profile:
        print(profile(names, args.profile))
        return 0
    results = measure(names, args.repeats, args.warmup)
    if args.json:
        info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version()}
        print(json.dumps({"repeats": args.repeats, "warmup": args.warmup, **info, "results": results}, indent=2))
    else:
        print(table(results, args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
