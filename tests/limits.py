"""Time and memory bounds for the budget tests: a piece of work run in a fresh interpreter, or
traced in this one; and the sandbox of the red-team tests, which runs `netcfg` commands each in
a child process of its own and measures them.

The bounds are generous (a loaded 2-core machine): they catch a cost that grows with the input
(seconds and gigabytes where a refusal should take milliseconds and megabytes), not noise.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Measured:
    seconds: float
    """Wall time of the work alone (not the interpreter's start or the setup)."""
    growth_mib: float
    """How much the work raised the process's peak RSS."""
    error: str
    """str() of the exception the work raised ('' when none)."""


def measure(setup: str, work: str) -> Measured:
    """Run `setup`, then `work` (Python source) in a fresh interpreter that imports this netcfg."""
    script = f"""
import json, resource, time
{setup}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
error = ""
try:
{textwrap.indent(work, "    ")}
except Exception as exc:
    error = str(exc)
seconds = time.perf_counter() - start
growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({{"seconds": seconds, "growth_mib": growth, "error": error}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    return Measured(**json.loads(done.stdout.splitlines()[-1]))


@dataclass
class Traced:
    seconds: float = 0.0
    peak_mib: float = 0.0
    """The peak of Python's allocations while the block ran (tracemalloc)."""


@contextlib.contextmanager
def traced() -> Iterator[Traced]:
    """Time and peak Python memory of a block, in this process (cheaper than `measure`; it does not
    see C allocations, such as libyaml's)."""
    got = Traced()
    tracemalloc.start()
    start = time.perf_counter()
    try:
        yield got
    finally:
        got.seconds = time.perf_counter() - start
        got.peak_mib = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()


# ---------------------------------------------------------------- commands, each in a child of its own


@dataclass(frozen=True)
class Ran:
    """One `netcfg` command run in a child of the sandbox."""

    code: int
    """Its exit code (-N: killed by signal N, such as SIGALRM past its wall-time limit)."""
    stdout: str
    stderr: str
    cpu_seconds: float
    """User and system time of the command alone (the child's, from the fork): unlike wall time,
    barely changed by other processes sharing the machine."""
    wall_seconds: float
    growth_mib: float
    """How much the command raised the child's peak RSS above its RSS when forked (everything
    already imported), from the kernel's high-water mark: C allocations, torch's and libyaml's
    included."""


class Sandbox:
    """A fresh interpreter that has imported torch and every netcfg module once, and runs each
    command (`netcfg ARGS`, in-process through the CLI's `main`) in a child forked from it.

    Each child starts with everything loaded, so its CPU time and peak-RSS growth are the
    command's own, and a command's memory cannot hide behind an earlier one's peak (a child's
    high-water mark starts at its RSS when forked). A fresh `python -m netcfg` per case costs
    3-4 s of start-up on a 2-core machine; a fork costs milliseconds. The server keeps torch to
    one thread and runs nothing parallel before forking (an OpenMP pool does not survive a fork).
    Each child gets a wall-time limit (SIGALRM) and an address-space limit, so a case that
    regresses to minutes or gigabytes fails instead of stalling or exhausting the machine."""

    def __init__(self):
        # CPU only: a child forked after CUDA is initialized cannot use it (and the cases are about
        # what netcfg counts before it allocates, on any device).
        env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""}
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from tests.limits import serve; serve()"],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        ready = self.process.stdout.readline()
        if ready.strip() != "ready":
            raise RuntimeError(f"the sandbox did not start: {ready!r}")

    def run(self, args: list[str], cwd: str | os.PathLike, wall_limit: float = 60,
            address_space_mib: int = 4096, env: dict[str, str] | None = None) -> Ran:  # fmt: skip
        request = {"args": [str(a) for a in args], "cwd": str(cwd), "wall_limit": wall_limit,
                   "address_space_mib": address_space_mib, "env": env or {}}  # fmt: skip
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return Ran(**json.loads(self.process.stdout.readline()))

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def serve() -> None:
    """The sandbox's loop: one JSON request a line on stdin, one JSON answer a line on stdout."""
    import importlib
    import io
    import pkgutil

    import torch

    import netcfg

    torch.set_num_threads(1)
    for module in pkgutil.walk_packages(netcfg.__path__, "netcfg."):
        if not module.name.endswith("__main__"):  # (which would run the CLI)
            importlib.import_module(module.name)
    from netcfg.cli.app import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        _call(main, ["validate", "configs/mlp.yaml"])  # pydantic builds its validators on first use
    print("ready", flush=True)
    for line in sys.stdin:
        print(json.dumps(_child(main, json.loads(line))), flush=True)


def _call(main, args: list[str]) -> int:
    sys.argv = ["netcfg", *args]
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except BaseException:  # what a traceback would end the command with
        import traceback

        traceback.print_exc()
        return 1
    return 0


def _child(main, request: dict) -> dict:
    import resource
    import signal
    import tempfile

    scratch = tempfile.mkdtemp(prefix="netcfg-sandbox-")
    out, err = os.path.join(scratch, "out"), os.path.join(scratch, "err")
    report_r, report_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: run the command, report on the pipe, exit without cleanups
        try:
            os.close(report_r)
            os.chdir(request["cwd"])
            os.environ.update(request["env"])
            for fd, path in ((1, out), (2, err)):
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
            limit = _address_space() + request["address_space_mib"] * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            signal.setitimer(signal.ITIMER_REAL, request["wall_limit"])  # SIGALRM ends a stalled command
            before = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            code = _call(main, request["args"])
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_SELF)
            sys.stdout.flush()
            sys.stderr.flush()
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            growth = (after.ru_maxrss - before.ru_maxrss) / 1024
            report = {"code": code, "cpu_seconds": cpu, "wall_seconds": wall, "growth_mib": growth}
            os.write(report_w, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(report_w)
    with os.fdopen(report_r, "rb") as pipe:
        raw = pipe.read()
    _, status, usage = os.wait4(pid, 0)
    if not raw:  # killed (SIGALRM past its wall-time limit) or died: what the kernel measured
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else 1
        cpu = usage.ru_utime + usage.ru_stime
        raw = json.dumps({"code": code, "cpu_seconds": cpu, "wall_seconds": request["wall_limit"],
                          "growth_mib": usage.ru_maxrss / 1024})  # fmt: skip
    report = json.loads(raw)
    for name, path in (("stdout", out), ("stderr", err)):
        with open(path, encoding="utf-8", errors="replace", newline="") as f:  # a "\r" in the output stays
            report[name] = f.read()
        os.unlink(path)
    os.rmdir(scratch)
    return report


def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
