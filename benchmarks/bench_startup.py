"""Start-up time of the netcfg CLI: wall time of whole processes, median of --runs runs.

Commands timed (the real console script of this interpreter, not a pyenv shim):

    netcfg --help          target < 0.5 s
    netcfg layers          target < 0.5 s
    netcfg schema          (reference; builds the JSON schema)
    python -c "import torch"   (reference: what importing torch alone costs here)
    python -c "pass"           (reference: the interpreter alone)

With hyperfine on PATH (and --tool auto, the default) hyperfine runs them (--shell=none,
--warmup, --runs, output discarded) and this script reads its JSON export; otherwise
(or with --tool python) a Python loop runs them through subprocess, interleaving the
commands run by run so that a busy machine's slow spells hit all of them alike. Every
command must exit 0.

The environment is passed through as it is. Note PYTHONDONTWRITEBYTECODE=1 (if set)
makes every run recompile netcfg's own modules, whose __pycache__ it never writes;
--bytecode-cache DIR times with PYTHONPYCACHEPREFIX=DIR and bytecode writing on (the
warm-up fills DIR; netcfg/ itself is not written to).

    python benchmarks/bench_startup.py                  # table
    python benchmarks/bench_startup.py --runs 20 --json
    python benchmarks/bench_startup.py --bytecode-cache /tmp/netcfg-pyc
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

TARGET_S = 0.5


def commands() -> list[tuple[str, list[str], float | None]]:
    scripts = Path(sysconfig.get_path("scripts"))
    netcfg = scripts / "netcfg"
    if not netcfg.is_file():
        raise SystemExit(f"no console script {netcfg}: install the package (pip install -e .) first")
    python = sys.executable
    return [
        ("netcfg --help", [str(netcfg), "--help"], TARGET_S),
        ("netcfg layers", [str(netcfg), "layers"], TARGET_S),
        ("netcfg schema", [str(netcfg), "schema"], None),
        ('python -c "import torch"', [python, "-c", "import torch"], None),
        ('python -c "pass"', [python, "-c", "pass"], None),
    ]


def child_env(pycache: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if pycache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = pycache
    return env


def run_python(cmds: list[tuple[str, list[str], float | None]], runs: int, warmup: int, env: dict) -> dict:
    """Interleaved subprocess loop: run r of every command, then run r + 1 ..."""
    times: dict[str, list[float]] = {name: [] for name, _, _ in cmds}
    for r in range(warmup + runs):
        for name, argv, _ in cmds:
            start = time.perf_counter()
            done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
            elapsed = time.perf_counter() - start
            if done.returncode != 0:
                raise SystemExit(f"{name} exited {done.returncode}: {done.stderr.decode(errors='replace')[-2000:]}")
            if r >= warmup:
                times[name].append(elapsed)
    return times


def run_hyperfine(
    hyperfine: str, cmds: list[tuple[str, list[str], float | None]], runs: int, warmup: int, env: dict
) -> dict:
    # Quote each argument for hyperfine's own word splitting (it runs them with --shell=none).
    def quoted(argv: list[str]) -> str:
        return " ".join(a if a and all(ch.isalnum() or ch in "-_./=" for ch in a) else f"'{a}'" for a in argv)

    with tempfile.TemporaryDirectory() as tmp:
        export = Path(tmp) / "hyperfine.json"
        argv = [hyperfine, "--shell=none", "--style=none", f"--warmup={warmup}", f"--runs={runs}"]
        argv += ["--export-json", str(export)]
        for name, cmd, _ in cmds:
            argv += ["--command-name", name, quoted(cmd)]
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        if done.returncode != 0:
            raise SystemExit(f"hyperfine failed ({done.returncode}): {done.stderr.decode(errors='replace')[-2000:]}")
        results = json.loads(export.read_text())["results"]
    return {res["command"]: res["times"] for res in results}


def summarize(cmds: list[tuple[str, list[str], float | None]], times: dict) -> list[dict]:
    rows = []
    for name, argv, target in cmds:
        values = times[name]
        q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive")
        rows.append(
            {
                "command": name,
                "argv": argv,
                "runs": len(values),
                "median_s": med,
                "iqr_s": [q1, q3],
                "min_s": min(values),
                "max_s": max(values),
                "target_s": target,
                "pass": None if target is None else med < target,
                "times_s": values,
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    head = f"{'command':<26} {'runs':>4} {'median s':>9} {'IQR s':>13} {'min s':>7} {'max s':>7}  target"
    lines = [head, "-" * len(head)]
    for r in rows:
        target = "-" if r["target_s"] is None else f"< {r['target_s']:.1f} {'ok' if r['pass'] else 'MISS'}"
        iqr = f"{r['iqr_s'][0]:.3f}-{r['iqr_s'][1]:.3f}"
        lines.append(
            f"{r['command']:<26} {r['runs']:>4} {r['median_s']:>9.3f} {iqr:>13} "
            f"{r['min_s']:>7.3f} {r['max_s']:>7.3f}  {target}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each command (default 15; at least 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs of each command first (default 2)")
    parser.add_argument("--tool", choices=["auto", "hyperfine", "python"], default="auto")
    parser.add_argument(
        "--bytecode-cache", metavar="DIR", help="time with PYTHONPYCACHEPREFIX=DIR, bytecode writing on"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if args.runs < 4:
        parser.error("--runs must be at least 4 (quartiles)")

    cmds = commands()
    env = child_env(args.bytecode_cache)
    hyperfine = shutil.which("hyperfine") if args.tool != "python" else None
    if args.tool == "hyperfine" and hyperfine is None:
        parser.error("hyperfine is not on PATH")
    if hyperfine:
        times = run_hyperfine(hyperfine, cmds, args.runs, args.warmup, env)
        tool = "hyperfine"
    else:
        times = run_python(cmds, args.runs, args.warmup, env)
        tool = "python subprocess loop (interleaved)"
    rows = summarize(cmds, times)
    info = {
        "tool": tool,
        "python": sys.executable,
        "runs": args.runs,
        "warmup": args.warmup,
        "PYTHONDONTWRITEBYTECODE": env.get("PYTHONDONTWRITEBYTECODE"),
        "PYTHONPYCACHEPREFIX": env.get("PYTHONPYCACHEPREFIX"),
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    if args.json:
        json.dump({"env": info, "results": rows}, sys.stdout, indent=2)
        print()
    else:
        print(
            f"{tool}; {args.runs} runs (+{args.warmup} warm-up) each; wall time per process; "
            f"PYTHONDONTWRITEBYTECODE={info['PYTHONDONTWRITEBYTECODE']}, "
            f"PYTHONPYCACHEPREFIX={info['PYTHONPYCACHEPREFIX']}; "
            f"load average {' '.join(f'{v:.2f}' for v in info['loadavg'] or ())}"
        )
        print(table(rows))
    return 0 if all(r["pass"] for r in rows if r["pass"] is not None) else 1


if __name__ == "__main__":
    sys.exit(main())
