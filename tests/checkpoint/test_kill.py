"""SIGKILL a process in the middle of saving: the checkpoint is always the old file or the new one.

A `python -c` server imports netcfg and builds two models once (A: 16 MB, B: 10 MB),
then, on each `start`, forks a writer that saves A, B, A, B... over the same file without
pause. The test kills the writer after a random delay (seeded), has the server reap it,
and checks that the file loads as exactly A or B, and that what is left is at most one
temporary file marked as netcfg's (netcfg.io.temporaries), which the next save removes.
Forking per round instead of starting a Python per round keeps 20+ kills under 10 s. A second
server kills a save just before each of its system calls in turn, so every step is covered.
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


TEMPORARY = re.compile(r"\.model\.safetensors\.netcfg-([0-9a-f]{32})\.tmp")
DECOYS = (".model.safetensors.0123456789abcdef.tmp", f".model.safetensors.netcfg-{'0' * 32}.tmp")
"""A user's files that look like temporary files (the second has exactly netcfg's pattern), made long ago."""


def leftovers(directory, target) -> set[str]:
    """Every file in `directory` but the target and the decoys."""
    return {p.name for p in directory.iterdir()} - {target.name, *DECOYS}


def registered(directory) -> set[str]:
    """The tokens of the registry's entries (netcfg.io.temporaries) for writes into `directory`."""
    from netcfg.io.temporaries import REGISTRY, _key, cache_dir

    prefix = _key(os.path.realpath(directory)) + "-"
    return {e.name[len(prefix) :] for e in (cache_dir() / REGISTRY).iterdir() if e.name.startswith(prefix)}


def marked(names: set[str], directory) -> bool:
    """Each is named as netcfg's temporary files are, with a token the registry records."""
    tokens = registered(directory)
    return all((m := TEMPORARY.fullmatch(n)) and m.group(1) in tokens for n in names)


def make_decoys(directory) -> None:
    old = time.time() - 86_400
    for name in DECOYS:
        (directory / name).write_bytes(b"the user's own")
        os.utime(directory / name, (old, old))


def decoys_intact(directory) -> bool:
    return all((directory / name).read_bytes() == b"the user's own" for name in DECOYS)


def test_sigkill_during_save_leaves_the_old_or_the_new_file(tmp_path):
    """Killed at random moments: the file is whole (A or B); what a kill leaves is one netcfg-marked
    temporary file (its name and its registry entry), which the next save removes; a user's files
    that look like temporary files are never touched."""
    a, b = (build(w, s) for w, s in MODELS)
    expected = {digest(a.model): "A", digest(b.model): "B"}
    target = tmp_path / "model.safetensors"
    make_decoys(tmp_path)
    ck.save(a, target)
    complete_size = {"A": target.stat().st_size}

    rng = random.Random(SEED)
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(target), str(CONFIGS / "mlp.yaml"), json.dumps(MODELS)],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    writer = None
    seen, left, complete_leftovers = [], [], 0
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

            now = leftovers(tmp_path, target)
            # At most one: a writer's save removes the leftover of the one before (unless killed before it began).
            assert len(now) <= 1, now
            assert marked(now, tmp_path), now  # netcfg's name and record, never safetensors' .tmpXXXXXX
            for name in now:
                try:
                    read_header(tmp_path / name)
                    complete_leftovers += 1
                except NetcfgError:
                    pass
            left.append(len(now - before))
            before = now
            assert decoys_intact(tmp_path)
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
    ck.save(a, target)  # the next save removes what the last kill left, and its record
    assert leftovers(tmp_path, target) == set() and registered(tmp_path) == set()
    assert decoys_intact(tmp_path)
    print(f"\n{len(seen)} kills: file was {''.join(seen)}; {sum(left)} kills left a temporary file "
          f"({complete_leftovers} of them complete), each removed by the next save")  # fmt: skip


PHASES = r"""
import fcntl, os, signal, sys
import torch
torch.set_num_threads(1)
from netcfg.actions import checkpoint as ck
from netcfg.building.builder import build_spec
from netcfg.io import tensor_files
from netcfg.spec.loader import load_spec

target, spec = sys.argv[1], sys.argv[2]
built = build_spec(load_spec(spec, ["model.layers.0.out_features=300"]), device="cpu", seed=2)
ck.save(built, target + ".warmup")  # lazy imports done here, not in each writer
os.remove(target + ".warmup")
tensor_files.CHUNK = 16384  # several writes per tensor
CALLS = [(os, "open"), (os, "write"), (os, "pread"), (os, "fsync"), (os, "fchmod"), (os, "close"),
         (os, "replace"), (os, "unlink"), (os, "listdir"), (fcntl, "flock")]
print("ready", flush=True)
for line in sys.stdin:
    n = int(line)
    pid = os.fork()
    if pid == 0:  # save B, killed just before the n-th call to any of CALLS
        count = [0]
        def wrap(real):
            def call(*args, **kwargs):
                count[0] += 1
                if count[0] == n:
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(*args, **kwargs)
            return call
        for module, name in CALLS:
            setattr(module, name, wrap(getattr(module, name)))
        ck.save(built, target)
        os._exit(0)
    print(os.waitpid(pid, 0)[1], flush=True)
"""


def test_sigkill_at_every_step_of_a_save(tmp_path):
    """Killed before each system call a save makes in turn (registering, creating, each chunk,
    fsync, rename, unregistering): the file is A or B, the only leftovers are netcfg-marked, and
    the next save removes them and their records."""
    a, b = build(256, 1), build(300, 2)
    names = {digest(a.model): "A", digest(b.model): "B"}
    target = tmp_path / "model.safetensors"
    make_decoys(tmp_path)
    ck.save(a, target)
    server = subprocess.Popen([sys.executable, "-c", PHASES, str(target), str(CONFIGS / "mlp.yaml")], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    seen, left = [], 0
    try:
        assert server.stdout.readline().strip() == "ready"
        for n in range(1, 500):
            server.stdin.write(f"{n}\n")
            server.stdin.flush()
            status = int(server.stdout.readline())
            seen.append(names[digest(ck.load(target, device="cpu").built.model)])
            if os.WIFEXITED(status):  # the save finished before its n-th call
                assert os.WEXITSTATUS(status) == 0 and seen[-1] == "B"
                break
            assert os.WTERMSIG(status) == signal.SIGKILL
            now = leftovers(tmp_path, target)
            assert len(now) <= 1 and marked(now, tmp_path), (n, now)
            left += len(now)
            ck.save(a, target)  # the next save: removes the leftover and every dead record
            assert leftovers(tmp_path, target) == set() and registered(tmp_path) == set(), n
            assert decoys_intact(tmp_path)
    finally:
        server.stdin.close()
        server.kill()
        server.wait()
    assert seen[-1] == "B" and len(seen) > 20, seen  # every step was killed once, then a save completed
    assert "B" in seen[:-1] and left >= 10, (seen, left)  # kills after the rename too; many left a file
    print(f"\n{len(seen) - 1} steps killed: file was {''.join(seen)}; {left} left a temporary file, each removed "
          "by the next save")  # fmt: skip


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
