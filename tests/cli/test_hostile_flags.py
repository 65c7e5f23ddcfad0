"""Hostile command lines: each bad number, path or run-time failure is one line naming the
flag (or the layer), exit 2, never a traceback; Ctrl-C is one line and exit 130."""

import os

import pytest
from typer.testing import CliRunner

from netcfg.cli.app import app
from netcfg.numbers import max_threads
from netcfg.text import shorten
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


# ---------------------------------------------------------------- paths

LONG_NAME = "a" * 300
# Every place a path enters the command line: (arguments before it, the flag or None for an
# argument, arguments after it, the label its errors carry).
PATH_PLACES = [
    (["validate"], None, []),
    (["build"], None, []),
    (["run"], None, []),
    (["inspect"], None, []),
    (["save"], None, ["-o", "x.safetensors"]),
    (["bench"], None, []),
    (["load"], None, []),
    (["tensors"], None, []),
    (["run", VALID], "--input", []),
    (["run", VALID], "--output", []),
    (["save", VALID], "-o", []),
    (["load", "x.safetensors"], "--config", []),
    (["validate", VALID], "--plugin", []),
    (["schema"], "--output", []),
]


def _at(place, path):
    before, flag, after = place
    return [*before, *([flag] if flag else []), path, *after]


def _label(place, path) -> str:
    """How an error names the path: the flag and the path, or the path alone, elided."""
    return shorten(f"{place[1]} {path}" if place[1] else path)


@pytest.mark.parametrize("place", PATH_PLACES, ids=lambda p: " ".join(p[0] + [p[1] or "PATH"]))
def test_a_file_name_too_long_is_one_line_naming_the_path(place, tmp_path):
    name = LONG_NAME + (".py" if place[1] == "--plugin" else "")
    path = str(tmp_path / name)
    expected = f"{_label(place, path)}: error: file name too long: {len(name)} bytes in one name, at most 255\n"
    assert refused(invoke(*_at(place, path)), expected)


@pytest.mark.parametrize("place", PATH_PLACES, ids=lambda p: " ".join(p[0] + [p[1] or "PATH"]))
def test_a_path_too_long_is_one_line(place):
    path = "/" + "/".join(["d"] * 3000) + ".py"
    expected = f"{_label(place, path)}: error: path too long: 6,003 bytes, at most 4,095\n"
    assert refused(invoke(*_at(place, path)), expected)


@pytest.mark.parametrize("args", [["schema", "-o"], ["run", VALID, "-o"], ["save", VALID, "-o"]])
def test_an_output_that_is_a_pipe_or_a_folder_is_refused_before_it_blocks(args, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    flag = "-o" if args[0] == "save" else "--output"
    result = invoke(*args, fifo)
    assert refused(
        result, f"{flag} {fifo}: error: not a regular file (a pipe, device or socket): netcfg writes files only\n"
    )
    assert refused(invoke(*args, tmp_path), f"{flag} {tmp_path}: error: is a directory\n")


def test_a_path_with_a_nul_or_that_the_file_system_cannot_encode_is_refused():
    from netcfg.cli._common import check_path
    from netcfg.errors import InputError, Loc

    with pytest.raises(InputError, match="a path cannot hold characters the file system cannot encode"):
        check_path("a\ud800.yaml", Loc("SPEC"))  # argv cannot hold one; typer or the API could
    with pytest.raises(InputError, match="a path cannot hold a NUL character"):
        check_path("a\x00.yaml", Loc("SPEC"))
    check_path("a\udcff.yaml", Loc("SPEC"))  # an undecodable byte of argv: a valid name


def test_a_plugin_module_name_is_not_a_path():
    result = invoke("validate", VALID, "--plugin", "no_such_module_" + "x" * 300)
    assert result.exit_code == 2 and "cannot import plugin" in result.stderr


def test_the_api_plugin_loader_refuses_a_name_too_long():
    from netcfg.building import plugins
    from netcfg.errors import PluginError

    with pytest.raises(PluginError, match="cannot read: File name too long"):
        plugins.load([LONG_NAME + ".py"])


# ---------------------------------------------------------------- run-time failures

FOURIER_FP16 = ["--set", "dtype=float16", "--set", "model.layers.2={type: fourier}", "--device", "cpu"]
FOURIER_AT = "--set model.layers.2={type: fourier}: error: layer '2' (fourier) failed on cpu with the sample input "


@pytest.mark.parametrize("command", [["run"], ["bench", "--min-time", "0"], ["bench", "--mode", "train"]])
def test_a_layer_that_fails_at_run_time_is_named(command):
    """float16 FFT is not implemented on the CPU: PyTorch's RuntimeError, one line naming the layer."""
    result = invoke(command[0], VALID, *FOURIER_FP16, *command[1:])
    assert result.exit_code == 2 and result.stdout == "" and result.stderr.count("\n") == 1, result.output
    assert result.stderr.startswith(FOURIER_AT + "[2, 20] float16: "), result.stderr


def test_a_layer_that_fails_is_named_where_the_file_defines_it(write_spec):
    path = write_spec(
        "netcfg: 1\ndtype: float16\ninput: {shape: [2, 8]}\nmodel:\n  type: sequential\n  layers:\n"
        "    - {type: linear, out_features: 8}\n    - type: sequential\n      layers:\n"
        "        - {type: relu}\n        - {type: fourier}\n"
    )
    result = invoke("run", path, "--device", "cpu")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{path}:11:11: error: layer '1.1' (fourier) failed on cpu with the sample input ")
    saved = path.parent / "f.safetensors"
    assert invoke("save", path, "-o", saved, "--device", "cpu").exit_code == 0
    check = invoke("load", saved, "--check", "--device", "cpu")
    assert check.exit_code == 2 and "layer '1.1' (fourier) failed on cpu" in check.stderr


def test_train_mode_with_nothing_trainable_is_refused_up_front():
    assert refused(
        invoke("bench", VALID, "--mode", "train", "--set", "model.trainable=false"),
        "--mode train: error: nothing to train: the model has no trainable parameters (every layer is frozen or has "
        "none); time its forward pass with --mode inference\n",
    )


def test_a_backward_pass_that_fails_names_the_mode(write_spec):
    path = write_spec(
        "netcfg: 1\ninput: {shape: [2, 8]}\nmodel:\n  type: graph\n  nodes:\n"
        "    a: {type: linear, out_features: 8}\n    b: {type: relu, inputs: [input]}\n  output: b\n"
    )
    result = invoke("bench", path, "--mode", "train", "--device", "cpu")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        "--mode train: error: the training step failed on cpu with the sample input [2, 8] float32: "
    )
