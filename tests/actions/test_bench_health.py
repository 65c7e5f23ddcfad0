"""The checks that keep a timing from misleading: fed the readings they judge."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netcfg.actions import bench_health
from netcfg.actions.bench import BenchConfig, bench
from netcfg.actions.bench_health import Conditions, health_warnings
from netcfg.cli.bench_cmd import table
from netcfg.spec.loader import load_spec
from tests.conftest import ROOT

STEADY = [1.00e-3, 1.01e-3, 0.99e-3, 1.02e-3, 1.00e-3, 0.98e-3, 1.01e-3, 1.00e-3, 0.99e-3, 1.00e-3]


def quiet(**changes) -> Conditions:
    values = {"threads": 2, "processes": 1, "cores": 2, "load_before": 0.1, "load_after": 2.0, "on_cpu": True}
    return Conditions(**{**values, **changes})


def test_a_quiet_machine_and_steady_rounds_give_no_warning():
    assert health_warnings(quiet(), STEADY, warmup_per_call=1.1e-3) == []


def test_more_threads_than_cores_is_oversubscribed_and_names_the_fix():
    (line,) = health_warnings(quiet(threads=4), STEADY)
    assert line.startswith("oversubscribed: 4 threads on 2 cores") and "--threads 2" in line


def test_processes_times_threads_count_against_the_cores():
    (line,) = health_warnings(quiet(threads=2, processes=2), STEADY)
    assert "2 threads x 2 processes on 2 cores" in line and "--threads 1" in line
    assert health_warnings(quiet(threads=1, processes=2), STEADY) == []


def test_a_load_past_the_free_cores_is_a_busy_machine():
    # 2 cores, 1 thread: one core free; a load of 1.4 fits in it with the slack, 1.6 does not
    assert health_warnings(quiet(threads=1, load_before=1.4), STEADY) == []
    (line,) = health_warnings(quiet(threads=1, load_before=1.6), STEADY)
    assert line.startswith("busy machine: load average 1.60 on 2 cores")
    (line,) = health_warnings(quiet(threads=2, load_before=0.6), STEADY)  # no core left free
    assert line.startswith("busy machine")


def test_cpu_other_processes_used_decides_over_the_load_average():
    # the load average still counts the run before (a baseline, a sweep's previous row): measured use wins
    assert health_warnings(quiet(threads=2, load_before=1.9, others=0.05), STEADY) == []
    (line,) = health_warnings(quiet(threads=2, load_before=0.0, others=0.6), STEADY)
    assert line.startswith("busy machine: other processes kept 0.60 cores busy during the run, on 2 cores")
    # one thread on 2 cores leaves one free: others may use it (with the slack), not more
    assert health_warnings(quiet(threads=1, others=1.2), STEADY) == []
    assert health_warnings(quiet(threads=1, others=1.3), STEADY) != []
    # cores outside this process's affinity are free for others
    assert health_warnings(quiet(threads=2, others=6.0, machine_cores=8), STEADY) == []


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="reads /proc/stat (Linux)")
def test_the_clock_counts_a_process_that_is_not_this_ones_as_another():
    # a child still running is not in this process's CPU times (only waited-for children are):
    # its 0.5 s of CPU must show up as others' (at least; the machine may be busy besides)
    spin = "import time\nt = time.process_time() + 0.5\nwhile time.process_time() < t: pass\ntime.sleep(30)"
    clock = bench_health.CpuClock()
    other = subprocess.Popen([sys.executable, "-c", spin])
    try:
        began = time.monotonic()
        while time.monotonic() - began < 20 and _cpu_of(other.pid) < 0.5:
            time.sleep(0.05)
        others = clock.others()
        wall = time.monotonic() - clock.start[0]
    finally:
        other.kill()
        other.wait()
    assert others is not None and others * wall >= 0.45


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_machine_checks_do_not_apply_off_the_cpu_or_without_a_reading():
    assert health_warnings(quiet(threads=64, load_before=50.0, on_cpu=False), STEADY) == []
    assert health_warnings(quiet(load_before=None), STEADY) == []


def test_rounds_that_never_settled_are_unstable():
    spread = [1e-3, 2e-3] * 6
    (line,) = health_warnings(quiet(), spread, stopped_at_max=True)
    assert line.startswith("unstable: the rounds' IQR is")
    assert health_warnings(quiet(), spread, stopped_at_max=False) == []  # it settled within the time


def test_one_slow_round_is_interference():
    (line,) = health_warnings(quiet(), [*STEADY, 5e-3])
    assert line == "interference: the slowest round took 5.0x the median"


def test_a_warm_up_far_from_the_steady_state_says_the_speed_changed():
    (line,) = health_warnings(quiet(), STEADY, warmup_per_call=24e-3)  # the 0.015 ms vs 24 ms
    assert line.startswith("the speed changed: warm-up ran at 24 ms per call, the timed rounds at 1 ms")
    assert health_warnings(quiet(), STEADY, warmup_per_call=0.2e-3) != []
    assert health_warnings(quiet(), STEADY, warmup_per_call=None) == []


def test_a_single_round_is_not_judged_steady():
    assert health_warnings(quiet(), [1e-3]) == ["one round only: no spread to judge the timing by (raise --min-time)"]


def timed(monkeypatch, load: float, others: float | None = None):
    """A short real run of the MLP with the load average reading `load` (and others' CPU `others`)."""
    monkeypatch.setattr(bench_health, "load_average", lambda: load)
    monkeypatch.setattr(bench_health.CpuClock, "others", lambda self: others)
    config = BenchConfig(device="cpu", warmup=2, min_time=0.02, max_time=0.3, threads=1)
    return bench(load_spec(ROOT / "configs/mlp.yaml"), config)


def test_bench_reports_threads_load_and_warnings_in_json_and_table(monkeypatch):
    result = timed(monkeypatch, 97.5)
    row = json.loads(json.dumps(result.as_dict()))
    assert row["threads"] == 1 and row["load_before"] == 97.5 and row["cores"] == bench_health.cpu_cores()
    assert any(w.startswith("busy machine: load average 97.50") for w in row["warnings"])
    text = table([result])
    assert "1 CPU threads on" in text and "load average 97.50 before" in text
    assert "timed rounds" in text and " samples" not in text.splitlines()[1]
    assert "\nwarning: busy machine: load average 97.50" in text


def test_a_quiet_reading_adds_no_machine_warning(monkeypatch):
    result = timed(monkeypatch, 0.0)
    assert not [w for w in result.warnings if w.startswith(("busy", "oversubscribed"))]
    result = timed(monkeypatch, 5.0, others=0.0)  # a high load average from our own previous run
    assert not [w for w in result.warnings if w.startswith(("busy", "oversubscribed"))]
    assert result.as_dict()["others_busy"] == 0.0 and "other processes 0.00 cores" in table([result])
