"""Checkpoint save and load throughput: netcfg against raw safetensors and torch.save/torch.load.

    python benchmarks/bench_checkpoint.py [--repeats 5] [--dir DIR] [--overwrite] [--json] [--profile]

The model is GPT-2 small built from configs/gpt2.yaml (124M unique parameters, about
475 MiB of float32, the head tied to the token embedding); its hand-written twin
(benchmarks/twins.py, same state_dict names) is the target of the raw loads. All cases
run in one process, interleaved: every repeat runs each case once, in an order rotated
by one place per repeat, and each figure is the median over --repeats (5).

Files go to a fresh temporary directory under --dir (default: the system temp dir),
which should be on a real disk, not tmpfs: the fsync rows mean nothing on tmpfs, and
the script says which filesystem it used. The page cache is NOT dropped: every load is
warm-cache (the file was just written or read), so load figures are memory-bound, not
disk-bound. Between cases, untimed, the script calls os.sync() (so one case's pending
writeback does not land in the next case's timing) and gc.collect().

Save cases: netcfg `save` (durable: temp file, fsync, rename, fsync of the directory),
netcfg `save(durable=False)`, `safetensors.torch.save_model` alone and followed by an
fsync of the file, and `torch.save(model.state_dict())`. Each writes a new path (the
previous file is removed, untimed); with --overwrite each writes over the file the
previous case left (a checkpoint of the same size), as saving a checkpoint again does.
On ext4, a rename that replaces an existing file starts the writeback of the new one
(auto_da_alloc), so the two modes can differ even without fsync.

Load cases: netcfg `load(path, device="cpu")` end to end (spec from the file, meta
skeleton, every tensor read into memory of its own) and `load_into(model, path)` into an
already built model (the pure load: each tensor read straight into the parameter);
`safetensors.torch.load_model` into an already built twin (pure) and preceded by
building the twin (end to end); the twin built on the meta device with `load_file`'s
tensors assigned (they stay backed by the file's memory map, read on first touch: the
"+ page-in" row adds that deferred read; informational, netcfg does not leave weights
mapped); and `torch.load(weights_only=True)` + `load_state_dict`, pure and end to end.

Before anything is timed, every load case is run once and the loaded model's output on
the spec's sample input must equal the saved model's (torch.equal), with the tie kept.
MB/s is the file's size in bytes / 1e6 / the median seconds; a ratio is netcfg's MB/s
over the reference's (above 1: netcfg is faster). Target: every checked ratio >= 0.95;
the exit status is 1 when one is missed. --profile adds cProfile listings (stderr) of
one netcfg save(durable=False), one save_model and one netcfg load + page-in.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import json
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import safetensors
import safetensors.torch as st
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks` and `netcfg` importable from the checkout
    sys.path.insert(0, str(ROOT))

from benchmarks.twins import gpt2  # noqa: E402
from netcfg.actions.checkpoint import load, load_into, save  # noqa: E402
from netcfg.building.builder import build_spec, sample_input  # noqa: E402
from netcfg.spec.loader import load_spec  # noqa: E402

CONFIG = ROOT / "configs" / "gpt2.yaml"
TARGET = 0.95
MIN_BYTES = 400 * 10**6
PAGE = 4096


# ---------------------------------------------------------------------------------- helpers


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def page_in(model: torch.nn.Module) -> None:
    """Read one byte of every 4 KiB page of every tensor (faults in a mapped file's pages)."""
    seen = set()
    for t in model.state_dict().values():
        key = t.untyped_storage().data_ptr()
        if key in seen or t.numel() == 0:
            continue
        seen.add(key)
        t.detach().reshape(-1).view(torch.uint8)[::PAGE].sum()


def filesystem(path: Path) -> str:
    """The filesystem type holding `path`, from /proc/mounts (longest matching mount point)."""
    best, kind = "", "unknown"
    real = os.path.realpath(path)
    with contextlib.suppress(OSError), open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            point = fields[1].replace("\\040", " ")
            if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                best, kind = point, f"{fields[2]} ({fields[0]} on {point})"
    return kind


def tie_kept(model: torch.nn.Module) -> bool:
    return model.transformer.wte.weight is model.lm_head.weight


def output(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(x)


# ---------------------------------------------------------------------------------- cases


class Bench:
    """Holds the model, the files and the twin; each case returns its timed seconds."""

    def __init__(self, work: Path, overwrite: bool = False):
        self.work, self.overwrite = work, overwrite
        self.built = build_spec(load_spec(str(CONFIG)))
        self.model = self.built.model.eval()
        self.x = sample_input(self.built.spec)
        self.reference = output(self.model, self.x)
        self.twin = gpt2().eval()  # the pure-load target, built once
        self.target = build_spec(load_spec(str(CONFIG)), seed=1).model  # netcfg's pure-load target
        self.twin.load_state_dict(self.model.state_dict())
        assert torch.equal(output(self.twin, self.x), self.reference), "the twin does not match the netcfg model"
        self.files = {
            "netcfg": work / "netcfg.safetensors",
            "raw": work / "raw.safetensors",
            "torch": work / "torch.pt",
        }
        save(self.built, self.files["netcfg"])
        st.save_model(self.model, str(self.files["raw"]))
        torch.save(self.model.state_dict(), self.files["torch"])
        self.sizes = {k: p.stat().st_size for k, p in self.files.items()}
        self.out = work / "out"

    # ---- save: each writes self.out afresh, or over a previous checkpoint there with --overwrite

    def _prepare_out(self) -> None:
        if not self.overwrite:
            self.out.unlink(missing_ok=True)
        elif not self.out.exists():
            shutil.copyfile(self.files["netcfg"], self.out)
        os.sync()

    def _save(self, write: Callable[[], None]) -> float:
        self._prepare_out()
        start = time.perf_counter()
        write()
        return time.perf_counter() - start

    def save_netcfg(self) -> float:
        return self._save(lambda: save(self.built, self.out))

    def save_netcfg_nosync(self) -> float:
        return self._save(lambda: save(self.built, self.out, durable=False))

    def save_raw(self) -> float:
        return self._save(lambda: st.save_model(self.model, str(self.out)))

    def save_raw_fsync(self) -> float:
        def write() -> None:
            st.save_model(self.model, str(self.out))
            fsync_file(self.out)

        return self._save(write)

    def save_torch(self) -> float:
        return self._save(lambda: torch.save(self.model.state_dict(), self.out))

    # ---- load: each returns (seconds, ready model)

    def load_netcfg(self) -> tuple[float, torch.nn.Module]:
        start = time.perf_counter()
        model = load(self.files["netcfg"], device="cpu").built.model  # every tensor read: nothing lazy
        return time.perf_counter() - start, model

    def load_netcfg_into(self) -> tuple[float, torch.nn.Module]:
        start = time.perf_counter()
        load_into(self.target, self.files["netcfg"])
        return time.perf_counter() - start, self.target

    def load_raw_pure(self) -> tuple[float, torch.nn.Module]:
        start = time.perf_counter()
        st.load_model(self.twin, str(self.files["raw"]))
        return time.perf_counter() - start, self.twin

    def load_raw_e2e(self) -> tuple[float, torch.nn.Module]:
        start = time.perf_counter()
        twin = gpt2()
        st.load_model(twin, str(self.files["raw"]))
        return time.perf_counter() - start, twin

    def _meta_twin(self) -> torch.nn.Module:
        with torch.device("meta"):
            twin = gpt2()
        state = st.load_file(str(self.files["raw"]))
        # the file holds the tied matrix once, under one of its two names
        tied = state.get("lm_head.weight", state.get("transformer.wte.weight"))
        state["lm_head.weight"] = state["transformer.wte.weight"] = tied
        twin.load_state_dict(state, strict=True, assign=True)
        twin.tie_weights()
        return twin

    def load_raw_meta(self) -> tuple[float, torch.nn.Module]:
        start = time.perf_counter()
        twin = self._meta_twin()
        return time.perf_counter() - start, twin

    def load_raw_meta_paged(self) -> tuple[float, torch.nn.Module]:
        start = time.perf_counter()
        twin = self._meta_twin()
        page_in(twin)
        return time.perf_counter() - start, twin

    def load_torch_pure(self) -> tuple[float, torch.nn.Module]:
        start = time.perf_counter()
        self.twin.load_state_dict(torch.load(self.files["torch"], weights_only=True))
        return time.perf_counter() - start, self.twin

    def load_torch_e2e(self) -> tuple[float, torch.nn.Module]:
        start = time.perf_counter()
        twin = gpt2()
        twin.load_state_dict(torch.load(self.files["torch"], weights_only=True))
        return time.perf_counter() - start, twin


# (key, label, kind, file, method)
CASES = [
    ("save_netcfg", "netcfg save (durable)", "save", "netcfg", "save_netcfg"),
    ("save_raw_fsync", "safetensors save_model + fsync", "save", "raw", "save_raw_fsync"),
    ("save_netcfg_nosync", "netcfg save(durable=False)", "save", "netcfg", "save_netcfg_nosync"),
    ("save_raw", "safetensors save_model", "save", "raw", "save_raw"),
    ("save_torch", "torch.save(state_dict)", "save", "torch", "save_torch"),
    ("load_netcfg", "netcfg load (from the file alone)", "load", "netcfg", "load_netcfg"),
    ("load_netcfg_into", "netcfg load_into(built model) [pure]", "load", "netcfg", "load_netcfg_into"),
    ("load_raw_pure", "load_model(built twin) [pure]", "load", "raw", "load_raw_pure"),
    ("load_raw_e2e", "gpt2() + load_model", "load", "raw", "load_raw_e2e"),
    ("load_raw_meta", "meta gpt2() + load_file, assign (lazy)", "load", "raw", "load_raw_meta"),
    ("load_raw_meta_paged", "meta gpt2() + load_file, assign + page-in", "load", "raw", "load_raw_meta_paged"),
    ("load_torch_pure", "torch.load + load_state_dict [pure]", "load", "torch", "load_torch_pure"),
    ("load_torch_e2e", "gpt2() + torch.load + load_state_dict", "load", "torch", "load_torch_e2e"),
]

# (label, netcfg case, reference case, checked against TARGET)
RATIOS = [
    ("save durable: netcfg / save_model+fsync", "save_netcfg", "save_raw_fsync", True),
    ("save no fsync: netcfg / save_model", "save_netcfg_nosync", "save_raw", True),
    ("load e2e: netcfg load / gpt2()+load_model", "load_netcfg", "load_raw_e2e", True),
    ("load pure: netcfg load_into / load_model", "load_netcfg_into", "load_raw_pure", True),
    ("load e2e: netcfg load / meta twin+page-in", "load_netcfg", "load_raw_meta_paged", False),
    ("load e2e: netcfg load / torch.load e2e", "load_netcfg", "load_torch_e2e", False),
]


def run_case(bench: Bench, method: str) -> float:
    gc.collect()
    os.sync()
    result = getattr(bench, method)()
    if isinstance(result, tuple):
        seconds, model = result
        del model
        return seconds
    return result


def verify(bench: Bench) -> None:
    """Every load case once: the loaded model must compute what the saved one did, tie kept."""
    for _, label, kind, _, method in CASES:
        if kind != "load":
            continue
        _, model = getattr(bench, method)()
        assert tie_kept(model), f"{label}: the head is no longer tied to the token embedding"
        assert torch.equal(output(model, bench.x), bench.reference), f"{label}: output differs from the saved model's"
        del model
    for method in ("save_netcfg", "save_raw"):  # the saved files load back to the same tensors
        getattr(bench, method)()
        loaded = st.load_file(str(bench.out))
        state = bench.model.state_dict()
        assert all(torch.equal(t, state[n]) for n, t in loaded.items()), f"{method}: file differs from the model"
        del loaded


def profile(bench: Bench) -> str:
    buf = io.StringIO()
    for title, call in (
        ("netcfg save(durable=False)", lambda: save(bench.built, bench.out, durable=False)),
        ("safetensors save_model", lambda: st.save_model(bench.model, str(bench.out))),
        ("netcfg load + page-in", lambda: page_in(load(bench.files["netcfg"], device="cpu").built.model)),
    ):
        bench._prepare_out()
        prof = cProfile.Profile()
        prof.enable()
        call()
        prof.disable()
        buf.write(f"\n== cProfile: {title} (top 15 by cumulative time)\n")
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(15)
    return buf.getvalue()


# ---------------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where the temporary directory goes (default: system temp dir)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--overwrite", action="store_true", help="save over an existing checkpoint, not a new path")
    parser.add_argument("--profile", action="store_true", help="also cProfile one save (netcfg, raw) and one load")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    work = Path(tempfile.mkdtemp(prefix="netcfg-bench-ckpt-", dir=args.dir))
    fs = filesystem(work)
    if fs.startswith(("tmpfs", "ramfs")):
        print(f"warning: {work} is on {fs}: fsync costs nothing there; use --dir on a disk", file=sys.stderr)
    try:
        bench = Bench(work, overwrite=args.overwrite)
        assert bench.sizes["netcfg"] >= MIN_BYTES, f"model is only {bench.sizes['netcfg']} bytes"
        verify(bench)
        times: dict[str, list[float]] = {c[0]: [] for c in CASES}
        for r in range(args.repeats):
            shift = r % len(CASES)
            for key, _, _, _, method in CASES[shift:] + CASES[:shift]:
                times[key].append(run_case(bench, method))
        profiled = profile(bench) if args.profile else ""
        sizes = bench.sizes
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = []
    for key, label, kind, file, _ in CASES:
        median = statistics.median(times[key])
        rows.append({
            "case": key, "label": label, "kind": kind, "file_bytes": sizes[file], "median_s": median,
            "min_s": min(times[key]), "max_s": max(times[key]), "mb_per_s": sizes[file] / 1e6 / median,
            "runs_s": times[key],
        })  # fmt: skip
    by_key = {row["case"]: row for row in rows}
    ratios = []
    for label, ours, ref, checked in RATIOS:
        value = by_key[ours]["mb_per_s"] / by_key[ref]["mb_per_s"]
        ok = value >= TARGET
        ratios.append({"ratio": label, "netcfg": ours, "reference": ref, "value": value, "checked": checked, "ok": ok})
    missed = [r for r in ratios if r["checked"] and not r["ok"]]

    if args.json:
        print(json.dumps({
            "config": str(CONFIG.relative_to(ROOT)), "repeats": args.repeats, "dir": str(work), "filesystem": fs,
            "save_target": "existing file" if args.overwrite else "new path",
            "page_cache": "warm (not dropped)", "torch": torch.__version__, "safetensors": safetensors.__version__,
            "threads": torch.get_num_threads(), "target": TARGET, "rows": rows, "ratios": ratios,
        }, indent=2))  # fmt: skip
    else:
        print(f"GPT-2 small ({CONFIG.relative_to(ROOT)}), file {sizes['netcfg'] / 2**20:.1f} MiB; "
              f"median of {args.repeats} interleaved repeats; warm page cache; {work.parent} on {fs}; "
              f"saves to {'an existing file' if args.overwrite else 'a new path'}")  # fmt: skip
        print(f"torch {torch.__version__}, safetensors {safetensors.__version__}, {torch.get_num_threads()} threads\n")
        print(f"{'case':44s} {'median s':>9s} {'min s':>7s} {'max s':>7s} {'MB/s':>8s}")
        for kind in ("save", "load"):
            for row in (r for r in rows if r["kind"] == kind):
                print(f"{row['label']:44s} {row['median_s']:9.3f} {row['min_s']:7.3f} {row['max_s']:7.3f} "
                      f"{row['mb_per_s']:8.0f}")  # fmt: skip
            print()
        print(f"{'ratio (netcfg MB/s / reference MB/s)':50s} {'value':>6s}  target {TARGET}")
        for r in ratios:
            verdict = ("ok" if r["ok"] else "MISSED") if r["checked"] else "(info)"
            print(f"{r['ratio']:50s} {r['value']:6.2f}  {verdict}")
    if profiled:
        print(profiled, file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
