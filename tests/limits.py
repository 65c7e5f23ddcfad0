"""Time and memory bounds for the budget tests: a piece of work run in a fresh interpreter, or
traced in this one.

The bounds are generous (a loaded 2-core machine): they catch a cost that grows with the input
(seconds and gigabytes where a refusal should take milliseconds and megabytes), not noise.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass

from tests.conftest import ROOT


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
