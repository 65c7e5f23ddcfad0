"""`netcfg train --nproc 2` (DDP, FSDP) against one process: steps/s, checkpoint cost, the result.

Two runs of each kind, one after the other (2 gloo processes on the CPU, one thread each):

* `mlp`: the MLP of tests/train/test_distributed_train.py (a repeat of 2 blocks: FSDP's units),
  `--epochs` epochs with a checkpoint every 20 steps; one process, DDP and FSDP;
* `digits`: examples/digits/cnn.yaml (batch norm, dropout; no repeat, so no FSDP), one process
  and DDP.

Steps/s is the run's steps over its wall time from its first step (the ranks' start-up left out);
a checkpoint's cost is the median over the run's saves (FSDP: the gather to rank 0 included).

    python benchmarks/bench_train_nproc.py [--epochs 40] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netcfg.actions import train as actions  # noqa: E402
from netcfg.actions import train_dist  # noqa: E402
from netcfg.spec.loader import load_spec  # noqa: E402
from tests.train.helpers import make_data  # noqa: E402
from tests.train.test_distributed_train import SPEC  # noqa: E402


def run(spec: Path, out: Path, kind: str, overrides: list[str]) -> dict:
    loaded = load_spec(spec, overrides)
    if kind == "one":
        events = list(actions.train(loaded, str(out)))
    else:
        events = list(train_dist.train(loaded, str(out), 2, kind, threads=1))
    saves = [e.seconds for e in events if isinstance(e, actions.Saved)]
    last = events[-1]
    return {"run": kind, "steps": last.step, "wall_s": round(last.wall_s, 3),
            "steps_per_s": round(last.step / last.wall_s, 1), "save_ms": round(statistics.median(saves) * 1000, 1),
            "validation": last.validation}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        make_data(folder)
        mlp = folder / "spec.yaml"
        mlp.write_text(SPEC.replace("epochs: 3", f"epochs: {args.epochs}").replace("every: 4,", "every: 20,"))
        for kind in ("one", "ddp", "fsdp"):
            rows.append({"spec": "mlp", **run(mlp, folder / f"mlp-{kind}", kind, [])})
        digits = ROOT / "examples" / "digits" / "cnn.yaml"
        for kind in ("one", "ddp"):
            rows.append({"spec": "digits", **run(digits, folder / f"digits-{kind}", kind, [])})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in (r["validation"] or {}).items())
        print(f"{r['spec']:7} {r['run']:5} {r['steps']:5} steps {r['wall_s']:7.2f} s {r['steps_per_s']:7.1f} steps/s "
              f"checkpoint {r['save_ms']:6.1f} ms  validation {shown}")  # fmt: skip


if __name__ == "__main__":
    main()
