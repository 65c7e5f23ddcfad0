"""Whether a timing can be trusted: the conditions it ran under and the shape of its rounds.

A tight spread inside one run proves nothing about the machine: on a 2-core machine with more
runnable threads than cores, one run of a small model gave a median of 0.015 ms and the next
24 ms, each with a small IQR (OpenMP threads spin waiting for a core another process holds).
So a run records what it saw (threads, processes, cores, the load average before and after,
and on Linux how many cores other processes kept busy while it ran) and `health_warnings` turns
that, and the rounds' spread, into plain sentences. The checks are a pure function of those
numbers, so tests feed it the readings they want.

Why not the load average alone: it is a 1-minute moving average, so right after a run (the
one-process baseline of `--nproc 2`, the previous row of a sweep) it still counts that run's own
threads and calls an idle machine busy. The CPU time the whole machine spent (/proc/stat) minus
this process's and its children's (os.times) over the same window is what others took, exactly.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass

# A load average past the cores left free by this run counts as a busy machine only when it is
# this much past: the 1-minute average lags and rounds, a fraction of a task is noise.
LOAD_SLACK = 0.5
# Other processes using more than this many cores' worth of CPU beyond the cores this run left
# free, while it was measured, make a busy machine (the accounting has a tick's granularity).
OTHERS_SLACK = 0.25
# The slowest round this many times the median: something else ran during the measurement.
OUTLIER_RATIO = 2.0
# Warm-up calls this many times faster or slower than the steady state: the speed changed.
WARMUP_RATIO = 3.0


@dataclass(frozen=True)
class Conditions:
    """What the machine looked like around one measurement."""

    threads: int
    """torch threads of each process."""
    processes: int
    """Processes timed at once on this machine (ranks of a distributed run; 1 otherwise)."""
    cores: int
    """CPU cores this process may run on (its affinity mask)."""
    load_before: float | None
    """1-minute load average just before the model was built (None: not readable here)."""
    load_after: float | None
    """1-minute load average when the measurement ended (counts this run's own threads)."""
    on_cpu: bool = True
    """Threads, cores and load matter only where the model runs on the CPU."""
    others: float | None = None
    """Cores' worth of CPU time other processes used while this run was measured (None: not readable)."""
    machine_cores: int | None = None
    """Every core of the machine (others may run on cores outside this process's affinity)."""


def conditions(
    threads: int,
    processes: int = 1,
    on_cpu: bool = True,
    load_before: float | None = None,
    clock: CpuClock | None = None,
) -> Conditions:
    others = clock.others() if clock is not None else None
    return Conditions(threads, processes, cpu_cores(), load_before, load_average(), on_cpu, others, os.cpu_count())


class CpuClock:
    """Started before a measurement; `others()` then says how many cores other processes kept busy.

    Counts this process and its waited-for children (the ranks of a distributed run) as ours."""

    def __init__(self) -> None:
        self.start = (time.monotonic(), _machine_busy_s(), _own_cpu_s())

    def others(self) -> float | None:
        wall0, busy0, own0 = self.start
        busy1 = _machine_busy_s()
        wall = time.monotonic() - wall0
        if busy0 is None or busy1 is None or wall <= 0:
            return None
        return max(0.0, (busy1 - busy0) - (_own_cpu_s() - own0)) / wall


def _machine_busy_s() -> float | None:
    """CPU seconds every core of the machine has spent running anything, since boot (Linux)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 8:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[1:8])
    steal = int(fields[8]) if len(fields) > 8 else 0
    return (user + nice + system + irq + softirq + steal) / ticks


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not Unix
        return None


def health_warnings(
    seen: Conditions,
    times: list[float],
    warmup_per_call: float | None = None,
    stable: float = 0.05,
    stopped_at_max: bool = False,
) -> list[str]:
    """Sentences saying why the figures may not be the model's (empty: nothing seen)."""
    found = _machine_warnings(seen) if seen.on_cpu else []
    return found + _round_warnings(times, warmup_per_call, stable, stopped_at_max)


def _machine_warnings(seen: Conditions) -> list[str]:
    found = []
    wanted = seen.threads * seen.processes
    who = f"{seen.threads} threads" + (f" x {seen.processes} processes" if seen.processes > 1 else "")
    if wanted > seen.cores:
        found.append(
            f"oversubscribed: {who} on {seen.cores} cores; threads wait for a core and the times are the "
            f"scheduler's, not the model's (use --threads {max(1, seen.cores // seen.processes)})"
        )
    free = seen.cores - min(wanted, seen.cores)
    if seen.others is not None:
        if seen.others > max(free, (seen.machine_cores or seen.cores) - min(wanted, seen.cores)) + OTHERS_SLACK:
            found.append(
                f"busy machine: other processes kept {seen.others:.2f} cores busy during the run, on "
                f"{seen.cores} cores; they competed for the cores (rerun on an idle machine, or compare "
                "runs interleaved)"
            )
    elif seen.load_before is not None and seen.load_before > free + LOAD_SLACK:
        found.append(
            f"busy machine: load average {seen.load_before:.2f} on {seen.cores} cores before the run; other "
            "processes competed for the cores (rerun on an idle machine, or compare runs interleaved)"
        )
    return found


def _round_warnings(times: list[float], warmup_per_call: float | None, stable: float, at_max: bool) -> list[str]:
    found = []
    if len(times) < 2:
        return ["one round only: no spread to judge the timing by (raise --min-time)"]
    median = statistics.median(times)
    q1, _, q3 = statistics.quantiles(times, n=4)
    if at_max and q3 - q1 > stable * median:
        found.append(
            f"unstable: the rounds' IQR is {100 * (q3 - q1) / median:.0f}% of the median after the longest "
            f"measurement (wanted {100 * stable:.0f}%)"
        )
    if max(times) > OUTLIER_RATIO * median:
        found.append(f"interference: the slowest round took {max(times) / median:.1f}x the median")
    if warmup_per_call is not None and warmup_per_call > 0:
        ratio = warmup_per_call / median
        if ratio > WARMUP_RATIO or ratio < 1 / WARMUP_RATIO:
            found.append(
                f"the speed changed: warm-up ran at {_ms(warmup_per_call)} per call, the timed rounds at "
                f"{_ms(median)} (a longer --warmup, or a quieter machine)"
            )
    return found


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3g} ms"


def warning_lines(results: list, label=lambda r: f"{r.device} batch {r.batch}") -> list[str]:
    """Each result's warnings, once each (a sweep repeats the machine's), naming the row when several."""
    lines: list[str] = []
    for r in results:
        row = f"{label(r)}: " if len(results) > 1 else ""
        lines += [f"warning: {row}{w}" for w in r.warnings if f"warning: {row}{w}" not in lines]
    return lines
