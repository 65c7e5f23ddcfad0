"""Wall time and peak memory of `netcfg inspect`, and of torchinfo's summary() on GPT-2.

Each measurement is a fresh process timed by /usr/bin/time -v (wall clock and maximum
resident set size, start-up and torch import included, as a user sees it); the median
of --repeats runs is reported.

    python benchmarks/bench_inspect.py [--repeats 5] [--json]

netcfg counts on the meta device (nothing allocated). torchinfo needs the real model:
it builds the hand-written GPT-2 twin (benchmarks/twins.py) and runs it; it is skipped
when torchinfo is not installed (pip install torchinfo).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NETCFG = str(Path(sysconfig.get_path("scripts")) / "netcfg")

TORCHINFO = """
import torch, torchinfo
from benchmarks.twins import gpt2
model = gpt2().eval()
stats = torchinfo.summary(model, input_data=torch.zeros(1, 64, dtype=torch.long), depth=3, verbose=0)
print("PARAMS", stats.total_params)
"""


def timed(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of one run."""
    result = subprocess.run(["/usr/bin/time", "-v", *command], cwd=ROOT, capture_output=True, text=True, check=True)
    wall = re.search(r"Elapsed \(wall clock\) time .*: (?:(\d+):)?(\d+):([\d.]+)", result.stderr)
    hours, minutes, seconds = (float(g) if g else 0.0 for g in wall.groups())
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    return hours * 3600 + minutes * 60 + seconds, rss / 1024, result.stdout


def measure(name: str, command: list[str], repeats: int) -> dict:
    runs = [timed(command) for _ in range(repeats)]
    return {
        "case": name,
        "wall_s": statistics.median(r[0] for r in runs),
        "peak_rss_mib": statistics.median(r[1] for r in runs),
        "stdout": runs[-1][2],
    }


def has_torchinfo() -> bool:
    probe = subprocess.run([sys.executable, "-c", "import torchinfo"], capture_output=True)
    return probe.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [
        measure("netcfg inspect llama2-70b --layers", [NETCFG, "inspect", "configs/llama2-70b.yaml", "--layers"],
                args.repeats),
        measure("netcfg inspect gpt2 --layers", [NETCFG, "inspect", "configs/gpt2.yaml", "--layers"], args.repeats),
    ]  # fmt: skip
    rows[0]["parameters"] = int(re.search(r"parameters\s+([\d,]+)", rows[0]["stdout"]).group(1).replace(",", ""))
    rows[1]["parameters"] = int(re.search(r"parameters\s+([\d,]+)", rows[1]["stdout"]).group(1).replace(",", ""))
    if has_torchinfo():
        row = measure("torchinfo summary(gpt2 twin)", [sys.executable, "-c", TORCHINFO], args.repeats)
        row["parameters"] = int(re.search(r"PARAMS (\d+)", row["stdout"]).group(1))
        rows.append(row)
    for row in rows:
        del row["stdout"]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'case':38s} {'wall s':>8s} {'peak RSS MiB':>13s} {'parameters reported':>20s}")
    for row in rows:
        print(f"{row['case']:38s} {row['wall_s']:8.2f} {row['peak_rss_mib']:13.0f} {row['parameters']:20,}")


if __name__ == "__main__":
    main()
