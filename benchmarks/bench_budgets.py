"""Time and peak memory to refuse each class of oversized input (the budgets), one child process each.

Every case writes a hostile input into a scratch folder and runs one `netcfg` command on it
in a child process (`python -m netcfg ...`), with a wall-time limit and an address-space limit
so that a case that would exhaust the machine is stopped instead. Reported per case: wall
time, the child's peak RSS (its own, from wait4), the exit code and the first line of stderr.
`control` (`validate configs/mlp.yaml`) is the cost of starting netcfg and importing torch.

    python benchmarks/bench_budgets.py                    # every case, table
    python benchmarks/bench_budgets.py ties pretrained    # cases whose name contains a word
    python benchmarks/bench_budgets.py --timeout 60 --json

Target: every case refused (exit 2) within 5 s of control's time (a busy machine slows the start-up
of each process more than the cases; compare the differences), and within a few hundred MiB of
control's peak RSS.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAD = "netcfg: 1\ninput: {shape: [2, 20]}\n"
MEMORY_LIMIT = 8 * 2**30  # address space of a child (torch and netcfg map about 0.7 GiB)


def _spec(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def interp_joined(folder: Path) -> list[str]:
    """1.3 KB: a name of 100 interpolated pieces of 9,999 characters (1 MB), in 1,000 copies."""
    name = "${'a' * 9999}" * 100
    text = HEAD + f'model:\n  type: repeat\n  times: 1000\n  body: {{type: identity, name: "{name}"}}\n'
    return ["validate", str(_spec(folder, "interp_joined", text))]


def alias_bytes(folder: Path) -> list[str]:
    """1 MB: a 1 MB name anchored once, given to 1,000 layers by aliases (1 GB of text)."""
    layers = ", ".join(["{type: relu, name: *s}"] * 999)
    text = HEAD + f"model:\n  type: sequential\n  layers: [{{type: relu, name: &s {'a' * 2**20}}}, {layers}]\n"
    return ["validate", str(_spec(folder, "alias_bytes", text))]


def repeat_lists(folder: Path) -> list[str]:
    """8 KB: 5,000 copies of a body holding a list of 2,000 values (10 million values)."""
    junk = ", ".join(["1"] * 2000)
    text = HEAD + f"model:\n  type: repeat\n  times: 5000\n  body: {{type: identity, junk: [{junk}]}}\n"
    return ["validate", str(_spec(folder, "repeat_lists", text))]


def flat_list(folder: Path) -> list[str]:
    """10 MB: one flat list of 4.9 million values."""
    text = HEAD + "model: {type: linear, out_features: 4}\nx: [" + "1," * 4_900_000 + "1]\n"
    return ["validate", str(_spec(folder, "flat_list", text))]


def unknown_keys(folder: Path) -> list[str]:
    """0.8 MB: one layer with 60,000 unknown keys."""
    keys = ", ".join(f"k{i}: 1" for i in range(60_000))
    return ["validate", str(_spec(folder, "unknown_keys", HEAD + f"model: {{type: identity, {keys}}}\n"))]


def graph_refs(folder: Path) -> list[str]:
    """20,000 graph nodes, each reading the previous one by name and one unknown name."""
    nodes = "".join(f"    n{i}: {{type: relu, inputs: [{'input' if i == 0 else f'n{i - 1}'}, m{i}]}}\n"
                    for i in range(20_000))  # fmt: skip
    return ["validate", str(_spec(folder, "graph_refs", HEAD + f"model:\n  type: graph\n  nodes:\n{nodes}"))]


def ties_110k(folder: Path) -> list[str]:
    """One tie listing 110,000 paths the model does not have."""
    paths = ", ".join(f"layers.{i}.weight" for i in range(110_000))
    text = HEAD + f"model: {{type: sequential, layers: [{{type: linear, out_features: 4}}]}}\nties: [[{paths}]]\n"
    return ["validate", str(_spec(folder, "ties_110k", text))]


def pretrained_99k(folder: Path) -> list[str]:
    """A file of 99,000 tensors mapped into a model of 4,000 parameters that has none of them."""
    import torch
    from safetensors.torch import save_file

    file = folder / "many.safetensors"
    save_file({f"blocks.{i}.weight": torch.zeros(1) for i in range(99_000)}, str(file))
    text = HEAD + "model: {type: repeat, times: 2000, body: {type: linear, out_features: 20}}\n"
    text += f'pretrained:\n  - file: {file.name}\n    map: {{"blocks.": "extra."}}\n'
    return ["validate", str(_spec(folder, "pretrained_99k", text))]


def _checkpoint_with_spec(folder: Path, name: str, spec_text: str) -> list[str]:
    """configs/mlp.yaml saved, its embedded spec replaced by `spec_text` (with a matching sha256)."""
    base = folder / "mlp.safetensors"
    if not base.exists():
        subprocess.run([sys.executable, "-m", "netcfg", "save", "configs/mlp.yaml", "-o", str(base)],
                       check=True, cwd=ROOT, capture_output=True)  # fmt: skip
    raw = base.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header["__metadata__"]
    meta["netcfg.spec"] = spec_text
    meta["netcfg.spec_sha256"] = hashlib.sha256(spec_text.encode()).hexdigest()
    text = json.dumps(header, separators=(",", ":")).encode()
    path = folder / f"{name}.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n :])
    return ["load", str(path), "--device", "meta"]


def _spec_json(model: dict) -> str:
    return json.dumps({"netcfg": 1, "input": {"shape": [2, 20]}, "model": model}, separators=(",", ":"))


def embedded_interp(folder: Path) -> list[str]:
    """A 1.5 KB checkpoint whose spec is interp_joined's."""
    model = {"type": "repeat", "times": 1000, "body": {"type": "identity", "name": "${'a' * 9999}" * 100}}
    return _checkpoint_with_spec(folder, "embedded_interp", _spec_json(model))


def embedded_repeat(folder: Path) -> list[str]:
    """A 4 KB checkpoint whose spec is repeat_lists's."""
    model = {"type": "repeat", "times": 5000, "body": {"type": "identity", "junk": [1] * 2000}}
    return _checkpoint_with_spec(folder, "embedded_repeat", _spec_json(model))


def embedded_duplicate_key(folder: Path) -> list[str]:
    """A checkpoint whose embedded spec's JSON gives 'out_features' twice (JSON keeps the last)."""
    text = _spec_json({"type": "linear", "out_features": 4})
    text = text.replace('"out_features":4', '"out_features":4,"out_features":5')
    return _checkpoint_with_spec(folder, "embedded_duplicate_key", text)


def control(folder: Path) -> list[str]:
    return ["validate", "configs/mlp.yaml"]


CASES: dict[str, Callable[[Path], list[str]]] = {f.__name__: f for f in [
    control, interp_joined, alias_bytes, repeat_lists, flat_list, unknown_keys, graph_refs, ties_110k,
    pretrained_99k, embedded_interp, embedded_repeat, embedded_duplicate_key,
]}  # fmt: skip


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_case(args: list[str], timeout: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "netcfg", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, preexec_fn=_limit_memory)  # fmt: skip
    killed = False
    try:
        _, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        killed = True
        _, err = child.communicate()
    seconds = time.perf_counter() - start
    # communicate() reaped the child; its own rusage is in RUSAGE_CHILDREN only as a maximum over all
    # children, so each case runs alone and the figure is compared with the previous maximum.
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    first = err.decode("utf-8", "replace").strip().splitlines()[:1]
    return {"seconds": seconds, "peak_rss_mib": peak, "exit_code": child.returncode, "killed": killed,
            "message": (first[0][:160] if first else "")}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("words", nargs="*", help="only cases whose name contains one of these")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a case is killed")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    names = [n for n in CASES if not args.words or n == "control" or any(w in n for w in args.words)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="netcfg-budgets-") as scratch:
        folder = Path(scratch)
        for name in names:
            command = CASES[name](folder)
            # One process per case so each peak RSS is its own: run through a fresh Python that
            # reports its child's figure (RUSAGE_CHILDREN is a maximum over all children).
            probe = [sys.executable, __file__, "--one", json.dumps(command), str(args.timeout)]
            done = subprocess.run(probe, capture_output=True, text=True, cwd=ROOT)
            row = json.loads(done.stdout)
            rows.append({"case": name, **row})
            if not args.json:
                state = "KILLED" if row["killed"] else f"exit {row['exit_code']}"
                print(f"{name:24s} {row['seconds']:7.2f} s {row['peak_rss_mib']:8.0f} MiB  {state}  {row['message']}",
                      flush=True)  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=2))
    start_up = next(r["seconds"] for r in rows if r["case"] == "control")
    ok = all(r["case"] == "control" or (r["exit_code"] == 2 and r["seconds"] - start_up < 5) for r in rows)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        print(json.dumps(run_case(json.loads(sys.argv[2]), float(sys.argv[3]))))
    else:
        main()
