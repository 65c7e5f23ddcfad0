"""`netcfg run CHECKPOINT [--input X] [-o OUT]` and `load --check --input X`: a trained model run
on one's own data from the command line, with the file's weights (not the spec's initialization)."""

from __future__ import annotations

import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import netcfg
from netcfg.cli.app import app
from tests.conftest import CONFIGS

MLP = str(CONFIGS / "mlp.yaml")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _trained(tmp_path):
    """A checkpoint whose weights are not the spec's initialization (as after training)."""
    model = netcfg.build(MLP)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(-3).add_(0.25)
    path = tmp_path / "trained.safetensors"
    netcfg.save(model, path)
    return model, path


def test_run_a_checkpoint_on_a_users_input_with_its_own_weights(tmp_path):
    model, ckpt = _trained(tmp_path)
    x = torch.rand(5, 20, generator=torch.Generator().manual_seed(2))
    given = tmp_path / "x.safetensors"
    save_file({"input": x}, given)
    out = tmp_path / "y.safetensors"
    result = invoke("run", ckpt, "--input", given, "-o", out)
    assert result.exit_code == 0, result.output
    assert "input  [5, 20] float32" in result.output
    with torch.no_grad():
        torch.testing.assert_close(load_file(out)["output"], model.eval()(x), rtol=0, atol=1e-6)
    loaded = invoke("load", ckpt, "--check", "--input", given)
    assert loaded.exit_code == 0, loaded.output
    assert loaded.output.splitlines()[-1] == result.output.splitlines()[-2]  # the same checksum


def test_a_checkpoint_runs_its_sample_input_like_its_spec_with_the_same_weights(tmp_path):
    ckpt = tmp_path / "m.safetensors"
    assert invoke("save", MLP, "-o", ckpt, "--seed", "7").exit_code == 0
    from_file = invoke("run", ckpt, "--seed", "7")
    from_spec = invoke("run", MLP, "--seed", "7")
    assert from_file.exit_code == 0, from_file.output
    assert from_file.output.splitlines()[1:] == from_spec.output.splitlines()[1:]


def test_flags_that_do_not_apply_to_a_checkpoint_are_refused(tmp_path):
    _, ckpt = _trained(tmp_path)
    result = invoke("run", ckpt, "--set", "vars.width=3")
    assert result.exit_code == 2
    assert result.stderr == "--set: error: does not apply to a checkpoint: it runs as saved (run its spec instead)\n"
    given = tmp_path / "x.safetensors"
    save_file({"input": torch.rand(2, 20)}, given)
    result = invoke("load", ckpt, "--input", given)
    assert result.exit_code == 2
    assert result.stderr == "--input: error: needs --check (the checksum is of the outputs for it)\n"
    result = invoke("run", ckpt, "--device", "meta")
    assert result.exit_code == 2
    assert "cannot run on the meta device" in result.stderr


def test_a_checkpoint_input_the_model_cannot_take_is_one_line(tmp_path):
    _, ckpt = _trained(tmp_path)
    given = tmp_path / "x.safetensors"
    save_file({"input": torch.rand(2, 7)}, given)
    result = invoke("run", ckpt, "--input", given)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert result.stderr.startswith(f"--input {given}: error: the model cannot take an input [2, 7] float32")
