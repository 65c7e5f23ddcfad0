"""The checks that keep a timing from misleading: fed the readings they judge."""

import json

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


def timed(monkeypatch, load: float):
    """A short real run of the MLP with the load average reading `load`."""
    monkeypatch.setattr(bench_health, "load_average", lambda: load)
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
