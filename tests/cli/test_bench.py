"""netcfg bench and netcfg devices (short runs: the numbers themselves are checked by benchmarks/)."""

import json

import pytest
import torch
from typer.testing import CliRunner

from netcfg.actions.bench import BenchConfig, bench, parse_sweep, parse_warmup
from netcfg.cli.app import app
from netcfg.errors import InputError
from netcfg.spec.loader import load_spec
from tests.conftest import ROOT


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def invoke(*args):
    return CliRunner().invoke(app, list(args))


def test_json_has_pytest_benchmark_names_and_a_sweep_row_per_batch():
    result = invoke("bench", "configs/mlp.yaml", "--device", "cpu", "--min-time", "0.05", "--warmup", "2",
                    "--sweep", "batch=1,4", "--format", "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["batch"] for r in rows] == [1, 4]
    for row in rows:
        for key in ("median", "p90", "p99", "iqr", "min", "max", "mean", "stddev", "rounds", "ops",
                    "samples_per_s", "peak_memory_bytes", "threads", "torch", "device_name"):  # fmt: skip
            assert key in row
        assert row["min"] <= row["median"] <= row["p90"] <= row["p99"] <= row["max"]
        assert row["samples_per_s"] == pytest.approx(row["batch"] / row["median"])


def test_train_mode_steps_the_optimizer():
    spec = load_spec("configs/mlp.yaml")
    result = bench(spec, BenchConfig(device="cpu", mode="train", warmup=1, min_time=0.05, max_time=1))
    assert result.mode == "train" and result.median > 0 and result.rounds >= 10


def test_table_lists_the_statistics():
    result = invoke("bench", "configs/mlp.yaml", "--device", "cpu", "--min-time", "0.05", "--warmup", "0.01s")
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[2]
    for column in ("median ms", "p90 ms", "p99 ms", "IQR ms", "samples/s", "peak memory"):
        assert column in header


def test_flags_are_checked():
    with pytest.raises(InputError, match="expected a number of iterations"):
        parse_warmup("ten")
    assert parse_warmup("3") == (3.0, False) and parse_warmup("1.5s") == (1.5, True)
    assert parse_sweep("batch=1,8,64") == [1, 8, 64]
    with pytest.raises(InputError, match="only batch sizes can be swept"):
        parse_sweep("width=1,2")
    result = invoke("bench", "configs/mlp.yaml", "--mode", "eval")
    assert result.exit_code == 2
    assert result.output == (
        "error: Invalid value for '--mode': 'eval' is not one of 'inference', 'train' (see 'netcfg bench --help')\n"
    )


def test_absent_gpu_is_an_error_naming_what_is_present():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = invoke("bench", "configs/mlp.yaml", "--device", "cpu,cuda")
    assert result.exit_code == 2
    assert "device 'cuda' is not available: no CUDA GPU here (present: cpu)" in result.output


def test_scenarios_run_on_the_cpu():
    result = invoke("bench", "--scenario", "transfers", "--device", "cpu", "--format", "json", "--min-time", "0")
    (row,) = json.loads(result.output)
    assert row["scenario"] == "transfers" and row["slow_s"] > 0 and row["fast_s"] > 0
    if torch.cuda.device_count() < 2:
        two = invoke("bench", "--scenario", "two_gpus")
        assert two.exit_code == 2 and "needs two CUDA GPUs" in two.output


@pytest.mark.parametrize(
    "extra, flag",
    [(["configs/mlp.yaml"], "SPEC"), (["--batch", "4"], "--batch"), (["--dtype", "bfloat16"], "--dtype"),
     (["--mode", "train"], "--mode"), (["--compile"], "--compile"), (["--sweep", "batch=1,2"], "--sweep")],
)  # fmt: skip
def test_a_scenario_refuses_the_flags_that_shape_a_spec_run(extra, flag):
    result = invoke("bench", "--scenario", "logging", *extra)
    assert result.exit_code == 2
    assert result.output == f"{flag}: error: does not apply to --scenario logging (it times a fixed workload)\n"


def test_a_scenario_refuses_every_such_flag_at_once_and_two_gpus_refuses_a_device():
    result = invoke("bench", "--scenario", "transfers", "--batch", "4", "--seed", "1")
    assert result.exit_code == 2
    assert result.output == (
        "--batch: error: does not apply to --scenario transfers (it times a fixed workload)\n"
        "--seed: error: does not apply to --scenario transfers (it times a fixed workload)\n"
    )
    result = invoke("bench", "--scenario", "two_gpus", "--device", "cpu")
    assert result.exit_code == 2
    assert result.output == "--device: error: does not apply to --scenario two_gpus (it uses cuda:0 and cuda:1)\n"


def test_the_scenario_choices_are_the_scenarios_that_exist():
    from netcfg.actions.scenarios import SCENARIOS
    from netcfg.cli._common import Scenario

    assert [s.value for s in Scenario] == list(SCENARIOS)


def test_a_scenario_times_for_at_least_min_time(monkeypatch):
    from netcfg.actions import scenarios

    clock = iter(range(1000))  # each perf_counter() call: one more hundredth of a second
    monkeypatch.setattr(scenarios.time, "perf_counter", lambda: next(clock) / 100)
    calls = []
    best = scenarios._best(lambda: calls.append(1), torch.device("cpu"), repeats=2, min_time=0.05)
    assert best == pytest.approx(0.01)
    assert len(calls) == 1 + 5  # the untimed run, then runs until 0.05 s were spent


def test_devices_lists_the_cpu():
    result = invoke("devices", "--format", "json")
    rows = json.loads(result.output)
    assert rows[0]["device"] == "cpu" and rows[0]["cores"] >= 1
