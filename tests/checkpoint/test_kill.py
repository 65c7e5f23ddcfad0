"""SIGKILL a process in the middle of saving: the checkpoint is always the old file or the new one.

A `python -c` server imports netcfg and builds two models once (A: 16 MB, B: 10 MB),
then, on each `start`, forks a writer that saves A, B, A, B... over the same file without
pause. The test kills the writer after a random delay (seeded), has the server reap it,
and checks that the file loads as exactly A or B, and what temporary files are left.
Forking per round instead of starting a Python per round keeps 20+ kills under 10 s.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import torch

from netcfg.actions import checkpoint as ck
from netcfg.building.builder import build_spec
from netcfg.errors import NetcfgError
from netcfg.io.safetensors_header import read_header
from netcfg.spec.loader import load_spec
from tests.conftest import CONFIGS, ROOT

KILLS = 20  # at least; more until MID_WRITE kills landed while a temporary file existed
MID_WRITE = 6
MAX_KILLS = 80
SEED = 20240613
MODELS = [(130_000, 1), (80_000, 2)]  # (hidden width of configs/mlp.yaml, seed): A 16 MB and B 10 MB

SERVER = r"""
import json, os, sys
import torch
torch.set_num_threads(1)  # no thread pool to inherit across fork
from netcfg.actions import checkpoint as ck
from netcfg.building.builder import build_spec
from netcfg.spec.loader import load_spec

target, spec, models = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
built = [build_spec(load_spec(spec, [f"model.layers.0.out_features={w}"]), device="cpu", seed=s) for w, s in models]
ck.save(built[0], target + ".warmup")  # lazy imports done here, not in each writer
os.remove(target + ".warmup")
print("ready", flush=True)
for line in sys.stdin:
    command, arg = line.split()
    if command == "start":
        pid = os.fork()
        if pid == 0:  # the writer: save A and B in turn until killed
            i = int(arg)
            try:
                while True:
                    ck.save(built[i % 2], target)
                    i += 1
            finally:
                os._exit(3)
        print(pid, flush=True)
    elif command == "reap":
        print(os.waitpid(int(arg), 0)[1], flush=True)
"""


def digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(repr(tuple(t.shape)).encode())
        h.update(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def build(width: int, seed: int):
    return build_spec(
        load_spec(CONFIGS / "mlp.yaml", [f"model.layers.0.out_features={width}"]), device="cpu", seed=seed
    )


SAFETENSORS_TMP = re.compile(r"\.tmp[A-Za-z0-9]{6}")
"""safetensors (>= 0.7, Rust's tempfile crate) writes `.tmpXXXXXX` and renames it to netcfg's temporary name."""


def temporaries(directory, name: str) -> set[str]:
    """netcfg's `.NAME.<hex>.tmp` and safetensors' own `.tmpXXXXXX`."""
    return {
        p.name
        for p in directory.iterdir()
        if (p.name.startswith(f".{name}.") and p.name.endswith(".tmp")) or SAFETENSORS_TMP.fullmatch(p.name)
    }


def test_sigkill_during_save_leaves_the_old_or_the_new_file(tmp_path):
    a, b = (build(w, s) for w, s in MODELS)
    expected = {digest(a.model): "A", digest(b.model): "B"}
    target = tmp_path / "model.safetensors"
    ck.save(a, target)
    complete_size = {"A": target.stat().st_size}

    rng = random.Random(SEED)
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(target), str(CONFIGS / "mlp.yaml"), json.dumps(MODELS)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    writer = None
    seen, left, complete_leftovers, kinds = [], [], 0, {"netcfg": 0, "safetensors": 0}
    try:
        assert server.stdout.readline().strip() == "ready"
        before = set()
        round_ = 0
        while (round_ < KILLS or sum(left) < MID_WRITE) and round_ < MAX_KILLS:
            server.stdin.write(f"start {round_}\n")
            server.stdin.flush()
            writer = int(server.stdout.readline())
            # Mostly within a few saves (~20-40 ms each); sometimes before the first write began.
            time.sleep(rng.uniform(0, 0.005) if rng.random() < 0.2 else rng.uniform(0.005, 0.15))
            os.kill(writer, signal.SIGKILL)
            server.stdin.write(f"reap {writer}\n")
            server.stdin.flush()
            status = int(server.stdout.readline())
            writer = None
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status

            loaded = ck.load(target, device="cpu")  # whole, valid, and exactly A or B
            seen.append(expected[digest(loaded.built.model)])
            complete_size.setdefault(seen[-1], target.stat().st_size)
            assert target.stat().st_size == complete_size[seen[-1]]

            now = temporaries(tmp_path, target.name)
            new = now - before
            assert before <= now  # nothing cleans a dead writer's temporary file: they accumulate
            assert len(new) <= 1, new  # at most the one the killed writer was writing
            for name in new:
                kinds["safetensors" if SAFETENSORS_TMP.fullmatch(name) else "netcfg"] += 1
                try:
                    read_header(tmp_path / name)
                    complete_leftovers += 1
                except NetcfgError:
                    pass
            left.append(len(new))
            before = now
            assert {p.name for p in tmp_path.iterdir()} == {target.name} | now
            round_ += 1
    finally:
        if writer is not None:
            os.kill(writer, signal.SIGKILL)
        server.stdin.close()
        server.kill()
        server.wait()

    assert len(seen) >= KILLS
    assert set(seen) == {"A", "B"}, seen  # the writers did replace the file, both ways
    assert sum(left) >= MID_WRITE, left  # kills landed mid-write (a temporary file existed)
    print(f"\n{len(seen)} kills: file was {''.join(seen)}; {sum(left)} temporary files left behind, never cleaned up "
          f"({kinds['netcfg']} netcfg .NAME.<hex>.tmp, {kinds['safetensors']} safetensors .tmpXXXXXX; "
          f"{complete_leftovers} of them complete safetensors files)")  # fmt: skip


REWRITE = r"""
import sys
import torch
from netcfg.actions import checkpoint as ck
from netcfg.io.reading import load_tensors
from netcfg.building.builder import sample_input

path = sys.argv[1]
loaded = ck.load(path, device="cpu")
tensors = load_tensors(path)
with open(path, "r+b") as f:  # rewritten in place, as a careless program would: truncate, then garbage
    f.truncate(0)
    f.write(b"\xff" * 100)
loaded.built.model.eval()
with torch.no_grad():
    out = loaded.built.model(sample_input(loaded.built.spec, "cpu"))
print(bool(torch.isfinite(out).all()), sum(float(t.sum()) for t in tensors.values()) != 0)
"""


def test_a_loaded_model_survives_its_file_being_rewritten_in_place(tmp_path):
    """Loaded tensors own their memory: not the file's mmap pages, which would SIGBUS once truncated."""
    path = tmp_path / "model.safetensors"
    ck.save(build(*MODELS[1]), path)
    out = subprocess.run([sys.executable, "-c", REWRITE, str(path)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    assert out.stdout.split() == ["True", "True"]


def test_a_killed_save_leaves_a_temporary_file_that_a_later_save_removes(tmp_path):
    import os
    import time

    from netcfg.io.tensor_files import STALE_SECONDS, write_tensors

    target = tmp_path / "model.safetensors"
    stale = tmp_path / ".model.safetensors.0123456789abcdef.tmp"
    fresh = tmp_path / ".model.safetensors.fedcba9876543210.tmp"
    for leftover in (stale, fresh):
        leftover.write_bytes(b"partial")
    old = time.time() - STALE_SECONDS - 60
    os.utime(stale, (old, old))
    write_tensors({"x": torch.zeros(2)}, target)
    assert not stale.exists()  # left by a writer killed long ago
    assert fresh.exists()  # could belong to a save still running
