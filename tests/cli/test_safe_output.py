"""What netcfg prints is safe to print: invisible characters escaped, huge values elided,
CSV cells that a spreadsheet would run neutralized (netcfg.text, applied where the CLI prints)."""

import csv
import io
import json

import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from netcfg.cli.app import app
from tests.conftest import ROOT

VALID = str(ROOT / "tests/golden/cli/valid.yaml")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_zero_width_space_in_a_key_is_shown_escaped():
    result = invoke("validate", VALID, "--set", "model.layers.0.out_feat\u200bures=8")
    assert result.exit_code == 2
    assert result.stderr == (
        "--set model.layers.0.out_feat\\u200bures=8: error: unknown key 'out_feat\\u200bures' for linear; "
        "did you mean 'out_features'?\n"
    )


def test_a_bidi_override_in_a_choice_is_shown_escaped():
    result = invoke("inspect", VALID, "--format", "js\u202eon")
    assert result.exit_code == 2
    assert "'js\\u202eon' is not one of" in result.stderr and "\u202e" not in result.output


def test_a_huge_set_value_is_elided_with_its_length():
    value = "b" * 120_000
    result = invoke("validate", VALID, "--set", f"vars.width={value}")
    assert result.exit_code == 2
    # the expansion's string budget refuses it first; the flag's value is still elided
    assert result.stderr == (
        f"{VALID}:8:36: error: a string longer than 10,000 characters "
        f"(from --set vars.width={'b' * 23}… (120,017 characters))\n"
    )


def test_a_megabyte_layer_type_is_elided_with_its_length():
    result = invoke("validate", VALID, "--set", "model.layers.1.type=" + "a" * 1_048_576)
    assert result.exit_code == 2
    assert result.stderr == (
        "--set model.layers.1.type=aaaaaaaaaaaaaa… (1,048,602 characters): error: unknown layer type "
        f"'{'a' * 40}…' (1,048,576 characters) (see 'netcfg layers'; a plugin's types need --plugin)\n"
    )


def test_a_long_name_in_human_output_is_elided_but_json_keeps_it(tmp_path):
    name = "n" * 5000
    table = invoke("inspect", VALID, "--set", f"name={name}")
    assert table.exit_code == 0
    assert max(len(line) for line in table.stdout.splitlines()) < 500
    assert f"{'n' * 40}… (5,000 characters)" in table.stdout
    data = invoke("inspect", VALID, "--set", f"name={name}", "--format", "json")
    assert json.loads(data.stdout)["name"] == name


def _checkpoint_with_names(tmp_path, names):
    path = tmp_path / "names.safetensors"
    save_file({n: torch.zeros(1) for n in names}, path)
    return path


def test_csv_names_that_a_spreadsheet_would_run_are_neutralized(tmp_path):
    names = ['=HYPERLINK("http://x")', "+1", "-1+2", "@SUM(A1)", "\tx", "plain.weight"]
    path = _checkpoint_with_names(tmp_path, names)
    result = invoke("inspect", path, "--params", "--format", "csv")
    assert result.exit_code == 0
    shown = [row["name"] for row in csv.DictReader(io.StringIO(result.stdout))]
    assert sorted(shown) == sorted(['\'=HYPERLINK("http://x")', "'+1", "'-1+2", "'@SUM(A1)", "'\tx", "plain.weight"])


def test_json_output_stays_valid_json_with_invisible_characters(tmp_path):
    names = ["a\u202eb", "c\U000e0041d", "e\x1bf"]
    path = _checkpoint_with_names(tmp_path, names)
    result = invoke("inspect", path, "--format", "json")
    assert result.exit_code == 0 and result.stdout.isascii()
    assert sorted(t[0] for t in json.loads(result.stdout)["tensors"]) == sorted(names)
    table = invoke("tensors", path)
    assert "a\\u202eb" in table.stdout and "c\\U000e0041d" in table.stdout and "e\\x1bf" in table.stdout
