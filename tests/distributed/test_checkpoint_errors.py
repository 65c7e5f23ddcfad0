"""save/load --nproc refusals: one line each (the exact wording), exit 2, and no process started."""

import pytest

from netcfg.actions import distributed as dd
from netcfg.actions.checkpoint import save
from netcfg.actions.model import build_model
from netcfg.io.tensor_files import save_tensors
from netcfg.spec.loader import load_spec
from tests.conftest import ROOT
from tests.golden.regen import run_cli

VALID = ROOT / "tests/golden/cli/valid.yaml"


@pytest.fixture(autouse=True)
def nothing_launched(monkeypatch):
    monkeypatch.setattr(dd, "launch", lambda *a: pytest.fail("launched"))


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "valid.safetensors"
    save(build_model(load_spec(VALID)), path)
    return path


def refused(*args) -> str:
    code, stdout, stderr = run_cli([str(a) for a in args])
    assert (code, stdout) == (2, ""), stderr
    assert "Traceback" not in stderr
    return stderr


def test_strategy_without_nproc(tmp_path, checkpoint):
    why = "error: needs --nproc N (the processes to shard the model over)\n"
    assert refused("save", VALID, "-o", tmp_path / "x.safetensors", "--strategy", "fsdp") == f"--strategy fsdp: {why}"
    assert refused("load", checkpoint, "--strategy", "ddp") == f"--strategy ddp: {why}"


def test_flags_a_sharded_save_or_load_ignores(tmp_path, checkpoint):
    why = "error: does not apply to --nproc\n"
    assert refused("load", checkpoint, "--nproc", 2, "--non-strict") == f"--non-strict: {why}"
    out = tmp_path / "x.safetensors"
    assert refused("save", VALID, "-o", out, "--nproc", 2, "--no-memory-check") == f"--no-memory-check: {why}"
    assert refused("load", checkpoint, "--nproc", 2, "--plugin", "some.module") == f"--plugin: {why}"


def test_a_checkpoint_netcfg_did_not_write(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    save_tensors({"weight": __import__("torch").ones(2)}, foreign)
    assert refused("load", foreign, "--nproc", 2) == (
        f"{foreign}: error: holds no netcfg spec (not saved by netcfg): pass --config SPEC\n")  # fmt: skip


def test_a_checkpoint_that_does_not_fit_the_spec_is_refused_before_any_process_starts(tmp_path, checkpoint):
    other = tmp_path / "other.yaml"
    other.write_text(VALID.read_text().replace("out_features: 4", "out_features: 5"))
    assert refused("load", checkpoint, "--nproc", 2, "--config", other) == (
        f"{checkpoint}: error: tensor '2.weight' has shape [4, 16] in the file, the model needs [5, 16]\n"
        f"{checkpoint}: error: tensor '2.bias' has shape [4] in the file, the model needs [5]\n")  # fmt: skip


def test_a_sharded_save_of_a_model_with_no_unit_is_refused_before_any_process_starts(tmp_path):
    # it was refused inside the ranks, after starting them (18 s from the CLI)
    out = tmp_path / "x.safetensors"
    assert refused("save", VALID, "-o", out, "--nproc", 2) == (
        "--strategy fsdp: error: --strategy fsdp needs units to shard and this model has none (no repeat and no "
        "block template); name some in a shard: section (shard: {units: [linear]}), or use --strategy ddp\n"
    )


def test_a_check_input_without_the_models_inputs_is_refused_before_any_process_starts(tmp_path, checkpoint):
    # it was refused by the ranks, after starting them (18 s from the CLI)
    wrong = tmp_path / "wrong.safetensors"
    save_tensors({"a": __import__("torch").ones(2, 20), "b": __import__("torch").ones(2, 20)}, wrong)
    assert refused("load", checkpoint, "--nproc", 2, "--check", "--input", wrong) == (
        f"--input {wrong}: error: 2 tensors and none named 'input' ('a', 'b')\n"
    )


@pytest.mark.parametrize("value", [0, 65])
def test_nproc_out_of_range(tmp_path, monkeypatch, value):
    monkeypatch.undo()  # the range is checked inside launch, before any process starts
    assert refused("save", VALID, "-o", tmp_path / "x.safetensors", "--nproc", value) == (
        f"--nproc {value}: error: must be between 1 and 64, got {value}\n")  # fmt: skip
    assert not (tmp_path / "x.safetensors").exists()
