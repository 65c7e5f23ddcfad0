"""Time to refuse each hostile or broken spec in tests/golden/specs, after start-up.

Every case runs `netcfg validate CASE` through the CLI in this one process (torch and
netcfg already imported, as "after start-up" means), and its wall time is recorded;
the script prints the slowest cases and the maximum. Target: every case under 1 s.

    python benchmarks/bench_hostile.py [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netcfg.cli.app import app  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
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
    if args.json:
        print(json.dumps({"cases": len(rows), "max_seconds": worst, "rows": rows}, indent=2))
    else:
        print(f"{len(rows)} cases; slowest:")
        for r in rows[:8]:
            print(f"  {r['case']:32s} {r['seconds']:.3f} s  exit {r['exit_code']}")
        print(f"max {worst:.3f} s: {'ok (< 1 s)' if worst < 1 else 'OVER 1 s'}")
    sys.exit(0 if worst < 1 and all(r["exit_code"] == 2 for r in rows) else 1)


if __name__ == "__main__":
    main()
