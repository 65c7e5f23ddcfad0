"""Peak memory of loading a sharded checkpoint, against the model's size.

    python benchmarks/bench_shards.py [--size 2GiB] [--shard 500MB] [--dir DIR] [--no-reference] [--json]

A stack of square linear layers (float32, `--width` 4096: 64 MiB per weight) adds up to
`--size` of tensors; it is built and saved once as shards of at most `--shard` plus an index
(netcfg's own `save --max-shard-size`), and once as one file. Each case then runs in a fresh
Python process, which reports its resident memory once torch and netcfg are imported (the
baseline) and its peak (ru_maxrss) after the case; the figure is peak - baseline, over the
model's bytes. Page-cache pages are not resident memory of the process, so the file's size
does not count; a load that keeps a copy besides the model does.

Cases:
* `netcfg load INDEX`: netcfg.load(index): the spec from the index, the model on the meta
  device, each tensor read (256 MiB at a time) into the memory the model keeps.
* `netcfg load FILE`: the same from the one-file checkpoint.
* `netcfg load INDEX --non-strict`: the model built and initialized, then each tensor read
  straight into its parameter.
* `load_into(model, INDEX)`: into an already built model, each tensor straight into its parameter.
* `safetensors load_file + load_state_dict` (reference): every shard read by the safetensors
  library into a state dict, copied into a built model: the twice-the-model pattern.

Target: every netcfg case peaks at most 1.10 x the model's bytes over its baseline (exit 1
otherwise). The reference case is not held to it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 1.10

CHILD = r"""
import json, resource, sys, time
import torch
sys.path.insert(0, sys.argv[1])
import netcfg
from netcfg.actions import checkpoint as ck

def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0

case, index, single, spec = sys.argv[2:6]
torch.set_num_threads(1)
base = rss()
start = time.perf_counter()
if case == "load-index":
    model = netcfg.load(index, device="cpu")
elif case == "load-file":
    model = netcfg.load(single, device="cpu")
elif case == "non-strict":
    model = ck.load(index, device="cpu", strict=False).built.model
elif case == "load-into":
    model = netcfg.build(spec, device="cpu", seed=5)
    netcfg.load_into(model, index)
else:  # the safetensors library's way: a state dict of every shard, then a copy into the model
    from safetensors.torch import load_file
    model = netcfg.build(spec, device="cpu", seed=5)
    data = json.load(open(index))
    state = {}
    for shard in dict.fromkeys(data["weight_map"].values()):
        state.update(load_file(str(__import__("pathlib").Path(index).parent / shard)))
    model.load_state_dict(state)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
print(json.dumps({"base": base, "peak": peak, "seconds": seconds, "weights": weights}))
"""

CASES = {
    "load-index": "netcfg load INDEX",
    "load-file": "netcfg load FILE",
    "non-strict": "netcfg load INDEX --non-strict",
    "load-into": "load_into(model, INDEX)",
    "reference": "safetensors load_file + load_state_dict (reference)",
}


def spec_text(size: int, width: int) -> str:
    layer = width * width * 4 + width * 4
    count = max(1, round(size / layer))
    layers = "\n".join(f"    - {{type: linear, out_features: {width}}}" for _ in range(count))
    return f"netcfg: 1\nname: stack\ninput: {{shape: [1, {width}]}}\nmodel:\n  type: sequential\n  layers:\n{layers}\n"


def prepare(work: Path, size: int, width: int, shard: int) -> tuple[Path, Path, Path, int]:
    sys.path.insert(0, str(ROOT))
    from netcfg.actions import checkpoint as ck
    from netcfg.building.builder import build_spec
    from netcfg.spec.loader import load_spec

    spec = work / "stack.yaml"
    spec.write_text(spec_text(size, width))
    built = build_spec(load_spec(spec), device="cpu", seed=1)
    index, single = work / "stack.safetensors.index.json", work / "stack.safetensors"
    saved = ck.save(built, index, durable=False, max_shard_size=shard)
    ck.save(built, single, durable=False)
    weights = sum(t.numel() * t.element_size() for t in built.model.state_dict().values())
    print(f"model: {weights:,} bytes of tensors in {len(built.model.state_dict())} tensors; "
          f"{len(saved.shards)} shards of at most {shard:,} bytes", file=sys.stderr)  # fmt: skip
    return spec, index, single, weights


def run_case(case: str, spec: Path, index: Path, single: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), case, str(index), str(single), str(spec)],
                          capture_output=True, text=True, cwd=ROOT, check=False)  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{case} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    from netcfg.errors import Loc
    from netcfg.numbers import parse_size

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="2GiB", help="tensor bytes of the model (default 2GiB)")
    parser.add_argument("--shard", default="500MB", help="--max-shard-size of the save (default 500MB)")
    parser.add_argument("--width", type=int, default=4096, help="features of each linear layer (default 4096)")
    parser.add_argument("--dir", default=None, help="folder for the files (default: the system temp dir)")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference case (twice the model)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    size, shard = parse_size(args.size, Loc("--size")), parse_size(args.shard, Loc("--shard"))
    work = Path(tempfile.mkdtemp(prefix="bench-shards-", dir=args.dir))
    try:
        spec, index, single, weights = prepare(work, size, args.width, shard)
        rows = []
        for case, label in CASES.items():
            if case == "reference" and args.no_reference:
                continue
            r = run_case(case, spec, index, single)
            assert r["weights"] == weights, (case, r["weights"], weights)
            extra = r["peak"] - r["base"]
            rows.append({"case": label, "model_bytes": weights, "baseline_rss": r["base"], "peak_rss": r["peak"],
                         "peak_over_baseline": extra, "ratio": extra / weights, "seconds": r["seconds"],
                         "held": case != "reference"})  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    missed = [r for r in rows if r["held"] and r["ratio"] > TARGET]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        mib = 1 << 20
        print(f"{'case':<52} {'model':>9} {'baseline':>9} {'peak':>9} {'peak-base':>10} {'ratio':>6} {'seconds':>8}")
        for r in rows:
            print(f"{r['case']:<52} {r['model_bytes'] / mib:>5.0f} MiB {r['baseline_rss'] / mib:>5.0f} MiB "
                  f"{r['peak_rss'] / mib:>5.0f} MiB {r['peak_over_baseline'] / mib:>6.0f} MiB {r['ratio']:>5.2f}x "
                  f"{r['seconds']:>8.2f}")  # fmt: skip
        print(
            f"target: every netcfg case <= {TARGET:.2f}x the model's bytes over its baseline: "
            + ("met" if not missed else f"MISSED by {', '.join(r['case'] for r in missed)}")
        )
    return 1 if missed else 0


if __name__ == "__main__":
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
