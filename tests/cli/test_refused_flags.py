"""Flags the chosen mode would ignore are refused: one line naming the flag, exit 2, nothing done."""

import pytest
from typer.testing import CliRunner

from netcfg.cli.app import app
from tests.conftest import ROOT

AS_SAVED = "does not apply to a checkpoint: it is inspected as saved (inspect its spec instead)"


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "mlp.safetensors"
    result = CliRunner().invoke(app, ["save", str(ROOT / "configs/mlp.yaml"), "-o", str(path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return path


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def refused(result, line: str) -> bool:
    return result.exit_code == 2 and result.stdout == "" and result.stderr == line + "\n"


def test_load_refuses_set_without_config(checkpoint):
    result = invoke("load", checkpoint, "--set", "model.layers.0.out_features=8")
    assert refused(result, "--set: error: needs --config (a checkpoint's embedded spec is used as saved)")
    with_config = invoke("load", checkpoint, "--config", "configs/mlp.yaml", "--set", "seed=5")
    assert with_config.exit_code == 0, with_config.output


def test_load_refuses_check_on_the_meta_device(checkpoint):
    result = invoke("load", checkpoint, "--device", "meta", "--check")
    assert refused(result, "--check: error: needs values, which the meta device does not hold (use --device cpu)")
    assert invoke("load", checkpoint, "--device", "meta").exit_code == 0


def test_inspect_of_a_checkpoint_refuses_to_change_its_spec(checkpoint):
    assert refused(invoke("inspect", checkpoint, "--set", "vars.x=1"), f"--set: error: {AS_SAVED}")


def test_inspect_of_a_checkpoint_reads_its_embedded_spec_for_layers_init_and_memory(checkpoint):
    from_file = invoke("inspect", checkpoint, "--layers", "--init", "--train")
    from_spec = invoke("inspect", "configs/mlp.yaml", "--layers", "--init", "--train")
    assert from_file.exit_code == 0, from_file.output
    # the same tables; only the first line (the file's name) differs
    assert from_file.output.splitlines()[1:] == from_spec.output.splitlines()[1:]
    assert from_file.output.splitlines()[0].endswith("mlp.safetensors (embedded spec)")


def test_inspect_of_a_checkpoint_keeps_the_flags_its_header_answers(checkpoint):
    result = invoke("inspect", checkpoint, "--params", "--grep", "bias", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["name,dtype,shape,bytes", "0.bias,F32,256,1024", "2.bias,F32,10,40"]


@pytest.mark.parametrize(
    "target, args, flag",
    [("spec", ["--grep", "bias"], "--grep"), ("spec", ["--depth", "1"], "--depth"),
     ("checkpoint", ["--grep", "bias"], "--grep")],
)  # fmt: skip
def test_json_holds_every_row_so_row_filters_are_refused(checkpoint, target, args, flag):
    path = checkpoint if target == "checkpoint" else "configs/mlp.yaml"
    result = invoke("inspect", path, "--format", "json", *args)
    assert refused(result, f"{flag}: error: does not apply to --format json (it holds the whole report)")


@pytest.mark.parametrize("flag", ["--layers", "--init", "--train"])
def test_csv_is_the_parameter_table_so_other_tables_are_refused(flag):
    result = invoke("inspect", "configs/mlp.yaml", "--format", "csv", flag)
    assert refused(result, f"{flag}: error: does not apply to --format csv (it is the parameter table)")
