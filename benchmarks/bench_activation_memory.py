"""The planned activation memory of a forward pass against what PyTorch allocates.

For every spec under configs/ (or the ones named), a fresh child process builds the model on the
CPU, draws its sample input and runs eval-mode forward passes under torch.no_grad:

* RSS: the growth of the process's peak resident memory over the first forward pass (as
  `netcfg run` makes it; Linux: the high-water mark VmHWM is reset through /proc/self/clear_refs
  just before), plus the input's bytes. It holds more than tensors: the first pass of a process
  loads kernels and starts thread pools (some 20-35 MiB here), so it is shown, not held to the bound;
* allocator: the peak of the bytes PyTorch's CPU allocator holds for tensors made during the
  second forward pass (torch.profiler with profile_memory: the running total of every tensor
  allocation and release; the first and the second pass allocate the same), plus the input's bytes.

The estimate is `netcfg inspect`'s inference `activations` (netcfg/building/memplan.py). The
ratio estimate / allocator must be >= 1 (an upper bound) and <= --max-ratio (default 3) for
every spec whose allocator peak is at least --floor bytes (default 1 MiB; below, a few scalars
and statistics tensors weigh as much as the activations); the script exits 1 otherwise.

    python benchmarks/bench_activation_memory.py                 # every shipped config, table
    python benchmarks/bench_activation_memory.py configs/mlp.yaml --set vars.width=512 --json
    python benchmarks/bench_activation_memory.py --batch 8 --dtype bfloat16

configs/llama2-70b.yaml (276 GB of weights) runs shrunk to 2 layers of width 1024 (the shapes of
every layer kept, 16 heads sharing 2 key/value heads), named in the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = {"configs/plugins/fixed_hidden_mlp.yaml": ["examples/plugins/fixed_hidden.py"]}
SHRUNK = {
    "configs/llama2-70b.yaml": [
        "vars.layers=2", "vars.width=1024", "vars.heads=16", "vars.kv_heads=2", "vars.ffn=3584", "vars.vocab=4096",
        "input.high=4096",
    ],
}  # fmt: skip


def child(args: argparse.Namespace) -> dict:
    """In a fresh process: build, draw the input, measure the first and the second forward pass."""
    import torch

    from netcfg.actions.bench import with_batch
    from netcfg.actions.inspection import report
    from netcfg.actions.model import build_model
    from netcfg.building import plugins
    from netcfg.building.builder import sample_input
    from netcfg.spec.loader import load_spec

    torch.set_num_threads(args.threads)
    plugins.load(args.plugin or [])
    spec = with_batch(load_spec(args.spec, args.set or []), args.batch)
    built = build_model(spec, device="cpu", dtype=args.dtype, memory_check=False)
    estimate = report(built).memory.activations
    x = sample_input(built.spec, "cpu", built.seed)
    if x.is_floating_point():
        x = x.to(built.dtype)
    model = built.model.eval()
    input_bytes = x.numel() * x.element_size()

    def forward():
        with torch.no_grad():
            return model(x)

    rss = rss_growth(forward)  # first: the process's first forward pass
    allocated = allocator_peak(forward)
    return {"estimate": estimate, "allocator": input_bytes + allocated, "rss": input_bytes + rss,
            "input": list(x.shape), "dtype": str(built.dtype).removeprefix("torch.")}  # fmt: skip


def allocator_peak(fn) -> int:
    """Peak bytes held by PyTorch's CPU allocator for tensors made while `fn` runs."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    del out
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as f:
            data = json.load(f)
    finally:
        os.unlink(path)
    events = data["traceEvents"] if isinstance(data, dict) else data
    memory = [e["args"] for e in events if e.get("name") == "[memory]" and e["args"].get("Device Type") == 0]
    if not memory:
        return 0
    # "Total Allocated" counts from the profiler's start: the first event's total less its own bytes is 0
    base = memory[0]["Total Allocated"] - memory[0]["Bytes"]
    return max(0, max(m["Total Allocated"] for m in memory) - base)


def rss_growth(fn) -> int:
    """Growth of the peak resident set over `fn` (Linux: VmHWM reset by /proc/self/clear_refs)."""
    import gc

    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high-water mark to the current RSS
    before = _status("VmRSS")
    out = fn()
    del out
    return max(0, _status("VmHWM") - before)


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def measure(spec: str, overrides: list[str], args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", spec, "--threads", str(args.threads)]
    for value in overrides:
        command += ["--set", value]
    for plugin in PLUGINS.get(spec, []):
        command += ["--plugin", plugin]
    if args.batch:
        command += ["--batch", str(args.batch)]
    if args.dtype:
        command += ["--dtype", args.dtype]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    if done.returncode:
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        raise RuntimeError(f"{spec}: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def size(n: int) -> str:
    """Bytes to 3 significant figures, in the unit that suits them."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*", help="spec files (default: every config under configs/)")
    parser.add_argument("--set", action="append", help="override for every spec named (vars.width=512)")
    parser.add_argument("--batch", type=int, help="batch size (default: each spec's input)")
    parser.add_argument("--dtype", help="float32 | bfloat16 | float16 | float64 (default: each spec's)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads in the children (default 2)")
    parser.add_argument("--max-ratio", type=float, default=3.0)
    parser.add_argument("--floor", type=int, default=1 << 20, help="bytes below which the ratio is not held")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--plugin", action="append", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.spec = args.child
        print(json.dumps(child(args)))
        return 0
    os.chdir(ROOT)
    specs = args.specs or sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").rglob("*.yaml"))
    rows, failed = [], []
    for spec in specs:
        overrides = (args.set or []) + SHRUNK.get(spec, [])
        row = measure(spec, overrides, args)
        row["ratio"] = row["estimate"] / row["allocator"]
        held = row["allocator"] >= args.floor
        row["ok"] = row["ratio"] >= 1 and (row["ratio"] <= args.max_ratio or not held)
        if not row["ok"]:
            failed.append(spec)
        rows.append({"spec": spec + (" (shrunk)" if spec in SHRUNK else ""), **row})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print("| spec | input | dtype | estimate | allocator peak | estimate / allocator | first-pass RSS growth |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            flag = "" if r["ok"] else " **FAIL**"
            print(f"| `{r['spec']}` | {r['input']} | {r['dtype']} | {size(r['estimate'])} | {size(r['allocator'])} | "
                  f"{r['ratio']:.2f}{flag} | {size(r['rss'])} |")  # fmt: skip
        ratios = [r["ratio"] for r in rows]
        held = [r["ratio"] for r in rows if r["allocator"] >= args.floor]
        print(
            f"\nestimate / allocator: min {min(ratios):.2f}, max {max(ratios):.2f}"
            + (f" (max {max(held):.2f} over the {len(held)} specs with >= {size(args.floor)})" if held else "")
        )
    if failed:
        print(f"not within [1, {args.max_ratio}]: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
