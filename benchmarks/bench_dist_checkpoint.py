"""Sharded save and load (`--nproc N`, torch.distributed.checkpoint) against one process: wall time
and peak resident memory, and that the sharded save writes the one-process bytes.

    python benchmarks/bench_dist_checkpoint.py [--spec configs/gpt2.yaml] [--nproc 2] [--dir DIR] [--json]

Commands (each in a fresh process; peak: ru_maxrss of the command's process tree, i.e. its
largest process, the launcher's parent or a rank):
* `netcfg save SPEC -o one.safetensors --seed 1` and the same with `--nproc N` (FSDP): the files
  must be identical (exit 1 otherwise).
* `netcfg load one.safetensors` and the same with `--nproc N`.
Per rank (`torch.distributed.run`, each rank running netcfg's rank task itself and reporting its
resident memory once torch and netcfg are imported, and its peak after the task):
* save: the sharded build (FSDP2, initialized as one process would) and dcp.save;
* load: the meta build, sharding, to_empty and dcp.load of its shards.
The wall time of the `--nproc` commands includes starting the N processes (each imports torch and
netcfg) and stopping them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(args: list[str]) -> dict:
    """Wall seconds and peak RSS (MiB) of a command and its descendants."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    child = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    stdout, stderr = child.stdout.read().decode(), child.stderr.read().decode()
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"failed: {' '.join(args)}\n{stderr}")
    return {"wall_s": round(wall, 2), "peak_mib": usage.ru_maxrss // 1024, "stdout": stdout}


def per_rank(task: str, spec: str, path: str, nproc: int) -> list[dict]:
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            __file__, "--rank-task", task, "--spec", spec, "--path", path]  # fmt: skip
    lines = timed(args)["stdout"].splitlines()
    return sorted((json.loads(line) for line in lines if line.startswith("{")), key=lambda r: r["rank"])


def rank_task(task: str, spec_path: str, path: str) -> None:
    """One rank: netcfg's own rank task (save or load), timed, with its memory."""
    import torch

    from netcfg.actions import dist_checkpoint as dc
    from netcfg.actions.checkpoint import embedded_spec
    from netcfg.building import distributed as d
    from netcfg.io.shards import read_checkpoint
    from netcfg.spec.loader import load_spec

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["WORLD_SIZE"])))
    world = d.join("cpu")
    spec = load_spec(spec_path) if task == "save" else embedded_spec(read_checkpoint(path))
    job = dc.CheckpointJob(task, spec, "fsdp", "cpu", 1, path=path)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    start = time.perf_counter()
    (dc._save if task == "save" else dc._load)(job, world)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    d.leave()
    print(json.dumps({"rank": world.rank, "task_s": round(seconds, 2), "baseline_mib": baseline, "peak_mib": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="configs/gpt2.yaml")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--dir", help="where the checkpoints go (default: a temporary folder)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rank-task", choices=["save", "load"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank_task:
        return rank_task(args.rank_task, args.spec, args.path)
    folder = Path(args.dir or tempfile.mkdtemp(prefix="netcfg-dcp-")).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    one, many, ranks = folder / "one.safetensors", folder / "many.safetensors", folder / "ranks.safetensors"
    netcfg = [sys.executable, "-m", "netcfg"]
    nproc = ["--nproc", str(args.nproc)]
    results = {
        "save 1 process": timed([*netcfg, "save", args.spec, "-o", str(one), "--seed", "1"]),
        f"save --nproc {args.nproc}": timed([*netcfg, "save", args.spec, "-o", str(many), "--seed", "1", *nproc]),
        "load 1 process": timed([*netcfg, "load", str(one)]),
        f"load --nproc {args.nproc}": timed([*netcfg, "load", str(one), *nproc]),
    }
    for result in results.values():
        del result["stdout"]
    same = one.read_bytes() == many.read_bytes()
    report = {"spec": args.spec, "bytes": one.stat().st_size, "identical": same, "commands": results,
              "ranks": {"save": per_rank("save", args.spec, str(ranks), args.nproc),
                        "load": per_rank("load", args.spec, str(one), args.nproc)}}  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{args.spec}: {report['bytes']:,} bytes; sharded save identical to one process: {same}")
        for name, r in results.items():
            print(f"  {name:<18} {r['wall_s']:7.2f} s wall  peak {r['peak_mib']:6,} MiB (largest process)")
        for task, rows in report["ranks"].items():
            for r in rows:
                print(
                    f"  rank {r['rank']} {task}: {r['task_s']:6.2f} s, peak {r['peak_mib']:,} MiB "
                    f"({r['peak_mib'] - r['baseline_mib']:,} over its {r['baseline_mib']:,} MiB after imports)"
                )
    sys.exit(0 if same and ranks.read_bytes() == one.read_bytes() else 1)


if __name__ == "__main__":
    main()
