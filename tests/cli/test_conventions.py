"""Command-line conventions every command shares: help, -h, choices, completion, refused flags."""

import re

import pytest
import typer
from typer.testing import CliRunner

from netcfg.cli.app import app
from tests.conftest import ROOT

COMMANDS = sorted(typer.main.get_command(app).commands)


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_every_command_is_covered():
    assert {"validate", "build", "run", "inspect", "save", "load", "tensors", "bench", "devices", "layers",
            "schema"} <= set(COMMANDS)  # fmt: skip


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)], ids=lambda c: " ".join(c) or "netcfg")
def test_help_reads_as_usage_and_h_is_help(command):
    long, short = invoke(*command, "--help"), invoke(*command, "-h")
    assert long.exit_code == 0 and short.exit_code == 0
    assert short.output == long.output
    for noise in ("<list[", "list[str]", "<int range>", "<float range>", "TEXT", "INTEGER"):
        assert noise not in long.output, f"{noise!r} in the help of {command}"
    assert not re.search(r"--[\w-]+ <str>", long.output), "an option without a metavar"


def test_choices_are_shown_and_checked_by_typer():
    help_text = invoke("inspect", "--help").output
    assert "--format <table|json|csv>" in help_text
    assert "--dtype <float32|bfloat16|float16|float64>" in help_text
    for command in ("bench", "devices", "layers"):
        assert "--format <table|json>" in invoke(command, "--help").output
    result = invoke("devices", "--format", "csv")
    assert result.exit_code == 2
    assert result.output == (
        "error: Invalid value for '--format': 'csv' is not one of 'table', 'json' (see 'netcfg devices --help')\n"
    )


def test_options_have_readable_metavars():
    help_text = " ".join(invoke("build", "--help").output.split())
    for usage in ("--set KEY=VALUE", "--seed N", "--device DEVICE", "--plugin FILE|MODULE"):
        assert usage in help_text


def test_shell_completion_is_offered_and_completes_choices(monkeypatch):
    root = invoke("--help").output
    assert "--install-completion" in root and "--show-completion" in root
    shown = CliRunner().invoke(app, ["--show-completion", "bash"], prog_name="netcfg")
    assert shown.exit_code == 0 and "_NETCFG_COMPLETE" in shown.output
    monkeypatch.setenv("_NETCFG_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", "netcfg inspect x.yaml --format j")
    monkeypatch.setenv("COMP_CWORD", "4")
    completed = CliRunner().invoke(app, [], prog_name="netcfg")
    assert completed.output.split() == ["json"]
