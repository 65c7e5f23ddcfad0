"""Hostile command lines: each bad number, path or run-time failure is one line naming the
flag (or the layer), exit 2, never a traceback; Ctrl-C is one line and exit 130."""

import os

import pytest
from typer.testing import CliRunner

from netcfg.cli.app import app
from netcfg.numbers import max_threads
from tests.conftest import ROOT

VALID = str(ROOT / "tests/golden/cli/valid.yaml")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def refused(result, stderr: str) -> bool:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert result.stdout == ""
    assert result.stderr == stderr, result.stderr
    return True


# ---------------------------------------------------------------- numbers


def test_threads_are_capped_before_torch_sees_them():
    cap = max_threads()
    assert cap == min(1024, 4 * (os.cpu_count() or 1))
    for threads in ["100000", str(cap + 1), "0"]:
        assert refused(
            invoke("bench", VALID, "--threads", threads),
            f"--threads {threads}: error: must be between 1 and {cap} (4 per CPU core here), got '{threads}'\n",
        )


def test_threads_are_checked_by_the_action_too():
    from netcfg.actions import bench
    from netcfg.errors import InputError
    from netcfg.spec.loader import load_spec

    spec = load_spec(VALID)
    for config in [bench.BenchConfig(threads=100_000), bench.BenchConfig(min_time=float("inf")),
                   bench.BenchConfig(min_time=float("nan")), bench.BenchConfig(warmup=-1)]:  # fmt: skip
        with pytest.raises(InputError):
            bench.bench(spec, config)


@pytest.mark.parametrize("value", ["nan", "-inf", "-1", "1e400", "٣", "1_0", " 1", ""])
def test_min_time_is_a_finite_number_of_seconds(value):
    result = invoke("bench", VALID, "--min-time", value)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.startswith(f"--min-time {value}: error: ") and result.stderr.count("\n") == 1


def test_batch_and_sweep_take_ascii_integers():
    assert refused(invoke("bench", VALID, "--batch", "٣"), "--batch ٣: error: expected an integer, got '٣'\n")
    assert refused(
        invoke("bench", VALID, "--sweep", "batch=" + ",".join(["1"] * 40)),
        f"--sweep batch={','.join(['1'] * 40)}: error: at most 32 values, got 40\n",
    )
