"""Steps/s and peak memory of `netcfg train` reading its data whole or streamed, with 0 or N
data-loader workers: on the digits example, and on a larger file generated in a temporary folder.

Each configuration runs in a process of its own (its peak RSS is its own): `netcfg.actions.train`
for `--warmup` steps, then `--steps` timed steps (no validation, no checkpoint inside), reporting
steps/s, the time to the first step (reading whole, or only the header, plus the sha256 of the
file that every run takes), the training process's peak RSS and the largest worker's. The large
file (`--rows` samples of float32 [3, 32, 32] and an int64 label: 1.47 GB at 120,000) is written
streamed and trained on by a small MLP, so reading the data is most of a step; it sits in the
page cache after writing (a file larger than memory reads at the disk's speed instead: `--cold`
evicts its pages before each run).

    python benchmarks/bench_train_data.py [--rows 120000] [--workers 2] [--steps 200] [--repeat 3] [--threads 1]
                                          [--cold] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIGITS = ROOT / "examples" / "digits" / "cnn.yaml"
LARGE = """\
netcfg: 1
input: {{shape: [256, 3, 32, 32]}}
model:
  type: sequential
  layers:
    - {{type: flatten}}
    - {{type: linear, out_features: 128}}
    - {{type: relu}}
    - {{type: linear, out_features: 10}}
train:
  data: {data}
  inputs: {{input: images}}
  target: labels
  batch_size: 256
  steps: 1000
  loss: {{kind: cross_entropy}}
  optimizer: {{kind: adamw, lr: 0.001}}
"""


def one(spec: str, stream: str, workers: int, warmup: int, steps: int, threads: int) -> dict:
    """One configuration, in this process: steps/s, time to the first step, peak RSS."""
    import torch

    sys.path.insert(0, str(ROOT))
    from netcfg.actions import train as actions
    from netcfg.spec.loader import load_spec

    torch.set_num_threads(threads)
    total = warmup + steps
    overrides = [f"train.steps={total}", "train.epochs=null", "train.validation=null", f"train.stream={stream}",
                 f"train.workers={workers}", f"train.checkpoint={{every: {total}}}",
                 f"train.log_every={total}"]  # fmt: skip
    with tempfile.TemporaryDirectory() as out:
        began = time.perf_counter()
        events = actions.train(load_spec(spec, overrides), out)
        next(events)  # Started: the data checked (read whole, or its header), its sha256 taken
        first = time.perf_counter() - began
        pulled = 0
        while pulled < warmup:
            pulled += type(next(events)).__name__ == "Stepped"
        timed = time.perf_counter()
        while pulled < total:
            pulled += type(next(events)).__name__ == "Stepped"
        seconds = time.perf_counter() - timed
        worker_peak = max([peak_rss_mb(pid) for pid in children()], default=0.0)
        events.close()
    return {
        "stream": stream, "workers": workers, "steps_per_s": steps / seconds, "startup_s": first,
        "peak_rss_mb": peak_rss_mb("self"), "worker_peak_rss_mb": worker_peak,
    }  # fmt: skip


def peak_rss_mb(pid) -> float:
    """VmHWM of a process (Linux): its own since exec, unlike ru_maxrss, which a child started
    by fork and exec inherits from its parent."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def children() -> list[int]:
    """The processes this one started (its data-loader workers)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                if entry.isdigit() and int(f.read().rsplit(")", 1)[1].split()[1]) == os.getpid():
                    found.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


def write_large(folder: Path, rows: int) -> Path:
    """A safetensors file of `rows` random images and labels, written a chunk at a time."""
    import torch

    images, labels = rows * 3 * 32 * 32 * 4, rows * 8
    header = {"images": {"dtype": "F32", "shape": [rows, 3, 32, 32], "data_offsets": [0, images]},
              "labels": {"dtype": "I64", "shape": [rows], "data_offsets": [images, images + labels]}}  # fmt: skip
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path = folder / "large.safetensors"
    gen = torch.Generator().manual_seed(0)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        for start in range(0, rows, 10_000):
            f.write(torch.randn(min(10_000, rows - start), 3, 32, 32, generator=gen).numpy().tobytes())
        f.write(torch.randint(0, 10, (rows,), generator=gen).numpy().tobytes())
    return path


def evict(path: Path) -> None:
    """Drop the file's pages from the page cache (its own, nobody else's): reads go to the disk,
    as a file larger than memory's would."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def run_child(spec: Path, stream: str, workers: int, args, data: Path | None = None) -> dict:
    if data is not None and args.cold:
        evict(data)
    command = [sys.executable, __file__, "--child", str(spec), stream, str(workers), "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--threads", str(args.threads)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def _median(runs: tuple[dict, ...]) -> dict:
    """The run of median steps/s, with the spread of steps/s over the runs."""
    ordered = sorted(runs, key=lambda r: r["steps_per_s"])
    rates = [r["steps_per_s"] for r in ordered]
    return {**ordered[len(ordered) // 2], "steps_per_s_min": rates[0], "steps_per_s_max": rates[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=120_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="evict the large file from the page cache before each run")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("SPEC", "STREAM", "WORKERS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec, stream, workers = args.child
        print(json.dumps(one(spec, stream, int(workers), args.warmup, args.steps, args.threads)))
        return
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        began = time.perf_counter()
        data = write_large(Path(folder), args.rows)
        written = time.perf_counter() - began
        spec = Path(folder) / "large.yaml"
        spec.write_text(LARGE.format(data=data))
        configs = [(stream, workers) for stream in ("false", "true") for workers in (0, args.workers)]
        for name, path in (("digits", DIGITS), ("large", spec)):
            # Each configuration --repeat times, interleaved (the machine's load drifts): the median.
            file = data if name == "large" else None
            runs = [[run_child(path, *config, args, file) for config in configs] for _ in range(args.repeat)]
            results[name] = [_median(same) for same in zip(*runs, strict=True)]
        size = os.path.getsize(data)
    if args.json:
        print(json.dumps({"large_file_bytes": size, "write_s": written, **results}, indent=2))
        return
    cold = ", evicted from the page cache before each run" if args.cold else ""
    print(f"{args.threads} thread(s); {args.warmup} warm-up + {args.steps} timed steps; large file {size:,} bytes "
          f"({args.rows:,} samples, written in {written:.1f} s){cold}")  # fmt: skip
    print(f"{'data':8} {'read':8} {'workers':>7} {'steps/s (min-max)':>19} {'startup s':>10} {'peak RSS MB':>12} "
          f"{'worker RSS MB':>14}")  # fmt: skip
    for name, rows in results.items():
        for r in rows:
            read = "streamed" if r["stream"] == "true" else "whole"
            rate = f"{r['steps_per_s']:.1f} ({r['steps_per_s_min']:.0f}-{r['steps_per_s_max']:.0f})"
            print(f"{name:8} {read:8} {r['workers']:>7} {rate:>19} {r['startup_s']:>10.2f} "
                  f"{r['peak_rss_mb']:>12.0f} {r['worker_peak_rss_mb']:>14.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
