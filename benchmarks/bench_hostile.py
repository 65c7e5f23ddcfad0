"""Time to refuse each hostile or broken spec in tests/golden/specs, after start-up.

Every case runs `netcfg validate CASE` through the CLI in this one process (torch and
netcfg already imported, as "after start-up" means), and its wall time is recorded;
the script prints the slowest cases and the maximum. Target: every case under 1 s.

    python benchmarks/bench_hostile.py [--json]
    python benchmarks/bench_hostile.py --too-large    # also: `netcfg run configs/llama2-70b.yaml`

--too-large runs the 276 GB Llama-2-70B spec for real in a child process (not --device meta) and
reports how long it takes to be refused and the child's peak RSS: the memory guard must refuse it
before filling the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netcfg.cli.app import app  # noqa: E402


def too_large() -> dict:
    """Wall time and peak RSS of a child `netcfg run configs/llama2-70b.yaml` (refused, exit 2)."""
    netcfg = Path(sysconfig.get_path("scripts")) / "netcfg"
    start = time.perf_counter()
    done = subprocess.run([str(netcfg), "run", "configs/llama2-70b.yaml"], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"seconds": seconds, "peak_rss_mib": peak_kib / 1024, "exit_code": done.returncode,
            "message": done.stderr.strip()[:200]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--too-large", action="store_true", help="also run the llama2-70b memory-guard case")
    args = parser.parse_args()
    os.chdir(ROOT)
    runner = CliRunner()
    runner.invoke(app, ["validate", "configs/mlp.yaml"])  # start-up: imports, first build
    rows = []
    for path in sorted((ROOT / "tests/golden/specs").rglob("*.yaml")):
        start = time.perf_counter()
        result = runner.invoke(app, ["validate", str(path.relative_to(ROOT))])
        rows.append({"case": path.stem, "seconds": time.perf_counter() - start, "exit_code": result.exit_code})
    rows.sort(key=lambda r: -r["seconds"])
    worst = rows[0]["seconds"]
    big = too_large() if args.too_large else None
    if args.json:
        print(json.dumps({"cases": len(rows), "max_seconds": worst, "rows": rows, "too_large": big}, indent=2))
    else:
        print(f"{len(rows)} cases; slowest:")
        for r in rows[:8]:
            print(f"  {r['case']:32s} {r['seconds']:.3f} s  exit {r['exit_code']}")
        print(f"max {worst:.3f} s: {'ok (< 1 s)' if worst < 1 else 'OVER 1 s'}")
        if big is not None:
            print(f"netcfg run configs/llama2-70b.yaml: exit {big['exit_code']} in {big['seconds']:.1f} s, "
                  f"peak RSS {big['peak_rss_mib']:.0f} MiB: {big['message']}")  # fmt: skip
    sys.exit(0 if worst < 1 and all(r["exit_code"] == 2 for r in rows) else 1)


if __name__ == "__main__":
    main()
