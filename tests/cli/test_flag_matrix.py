"""The CLI's error boundary over a generated matrix: every command the typer app registers,
every argument and option it declares (flags without a value aside), every kind of bad value
a hostile user types. Each run must end with exit code 2 (or 0 where the value is fine), no
traceback, no line of 500 characters or more, and no raw control, bidi or zero-width
character in what is printed. New commands and options join the matrix by themselves."""

from __future__ import annotations

import os
import re
import unicodedata

import pytest
import typer
import typer.testing
from typer.testing import CliRunner

from netcfg.cli.app import app
from tests.conftest import ROOT

VALID = str(ROOT / "tests/golden/cli/valid.yaml")
GROUP = typer.main.get_command(app)
COMMANDS = GROUP.commands

VALUES = {
    "empty": "",
    "minus-one": "-1",
    "double-minus": "--1",
    "superscript-two": "\u00b2",
    "arabic-three": "\u0663",
    "inf": "inf",
    "nan": "nan",
    "overflow": "1e999",
    "huge-integer": "9" * 40,
    "ten-thousand": "x" * 10_000,
    "controls": "a\x1b[2Jb\nforged: error: c\rd\x07",
    "bidi": "x\u202ey\u2066z\u200b\u200fw\ufeff",
}
PATH_VALUES = ["fifo", "directory", "missing", "long-name"]  # made in a temporary folder
# An option whose value has parts (its metavar says which) also gets each bad value in each part.
FORMS = {
    "KEY=VALUE": ["model.layers.{}.out_features=8", "vars.width={}"],
    "batch=N,N,...": ["batch={}", "batch=1,{}"],
    "N|Ns": ["{}s"],
    "DEVICE": ["cuda:{}"],
    "DEVICE[,DEVICE...]": ["cpu,{}", "cuda:{}"],
}


def _params():
    for name, command in sorted(COMMANDS.items()):
        for param in command.params:
            if param.param_type_name == "option" and (param.is_flag or param.name == "debug"):
                continue  # takes no value
            label = param.opts[0] if param.param_type_name == "option" else param.name.upper()
            yield pytest.param(name, param, id=f"{name} {label}")


def _base(name: str, tmp) -> tuple[list[str], dict[str, list[str]]]:
    """A command line that works, as (the argument, options by parameter name), so that each
    bad value is the only thing wrong."""
    spec = [VALID]
    options = {
        "save": {"output": ["-o", str(tmp / "base.safetensors")]},
        "bench": {"warmup": ["--warmup", "0"], "min_time": ["--min-time", "0"], "device": ["--device", "cpu"]},
        "run": {"device": ["--device", "cpu"]},
        "build": {"device": ["--device", "cpu"]},
        # --no-check: a value that passes costs one export, not an export and its check
        "export": {"output": ["-o", str(tmp / "base.pt2")], "check": ["--no-check"]},
    }.get(name, {})
    if name in ("load", "tensors"):
        spec = [str(tmp / "checkpoint.safetensors")]
    if name in ("devices", "layers", "schema"):
        spec = []
    return spec, options


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("matrix")
    os.mkfifo(tmp / "fifo")
    (tmp / "directory").mkdir()
    result = CliRunner().invoke(app, ["save", VALID, "-o", str(tmp / "checkpoint.safetensors"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return tmp


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    """bench times nothing here: the matrix is about its command line, not its clock; and the
    click command is built from the typer app once, not at each of the ~900 runs (30 ms each)."""
    from netcfg.actions import bench

    monkeypatch.setattr(bench, "_sample", lambda step, device, config, progress: ([1e-3] * 10, 10))
    monkeypatch.setattr(typer.testing, "_get_command", lambda _app: GROUP)


def _values(param, tmp) -> list[tuple[str, str]]:
    """(name, text) of every bad value for this parameter."""
    paths = {"fifo": tmp / "fifo", "directory": tmp / "directory", "missing": tmp / "missing.yaml",
             "long-name": tmp / ("n" * 300 + ".py")}  # fmt: skip
    plain = [*VALUES.items(), *((key, str(path)) for key, path in paths.items())]
    forms = FORMS.get(getattr(param, "metavar", None) or "", [])
    return plain + [(f"{key} in {form}", form.replace("{}", text)) for form in forms for key, text in VALUES.items()]


def _unsafe(text: str) -> list[str]:
    """Characters a terminal would act on or hide: controls (but newline and tab), bidi and
    zero-width format characters, separators, lone surrogates."""
    return sorted(
        {
            f"U+{ord(c):04X}"
            for c in text
            if c not in "\n\t" and unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")
        }
    )


@pytest.mark.parametrize("name, param", list(_params()))
def test_bad_values_are_one_line_errors(name, param, folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # what a value names as an output file lands here
    spec, options = _base(name, folder)
    problems = []
    for key, value in _values(param, folder):
        if param.param_type_name == "argument":
            args = [name, value, *sum(options.values(), [])]
        else:
            given = {**options, param.name: [param.opts[0], value]}
            args = [name, *spec, *sum(given.values(), [])]
        result = CliRunner().invoke(app, args)
        output = result.stdout + result.stderr
        crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
        long_lines = [len(line) for line in output.splitlines() if len(line) >= 500]
        if crashed or result.exit_code not in (0, 2) or "Traceback" in output or long_lines or _unsafe(output):
            problems.append(
                f"{key}: exit {result.exit_code}, {type(result.exception).__name__ if crashed else 'no crash'}, "
                f"lines of {long_lines} characters, unsafe {_unsafe(output)}: {output[:300]!r}"
            )
        if result.exit_code == 2:
            errors = result.stderr.splitlines()
            if not errors or not all(re.search(r"(^|: )error: ", line) for line in errors):
                problems.append(f"{key}: exit 2 without one 'error:' line per problem: {result.stderr[:300]!r}")
    assert not problems, "\n".join(problems)
