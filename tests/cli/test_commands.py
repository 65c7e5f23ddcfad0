"""The commands end to end through typer's CliRunner, from the repository root."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from netcfg.cli.app import app
from tests.conftest import ROOT


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def invoke(*args):
    return CliRunner().invoke(app, list(args))


def test_help_lists_the_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("validate", "build", "run", "layers", "schema"):
        assert command in result.output


def test_validate_ok():
    result = invoke("validate", "configs/mlp.yaml")
    assert result.exit_code == 0
    assert result.output == "configs/mlp.yaml: ok (7,946 parameters, output shape [2, 10])\n"


def test_build_prints_the_tree_and_the_exact_count():
    result = invoke("build", "configs/mlp.yaml", "--device", "cpu")
    assert result.exit_code == 0
    assert "(0): Linear(in_features=20, out_features=256, bias=True)" in result.output
    # 20*256 + 256 + 256*10 + 10 parameters, 4 bytes each
    assert result.output.splitlines()[-1] == ("7,946 parameters, 31,784 bytes (31.0 KiB), device cpu, dtype float32")


def test_build_auto_device_says_which():
    result = invoke("build", "configs/mlp.yaml")
    assert result.exit_code == 0
    expected = "cuda:0" if torch.cuda.is_available() else "cpu (auto: no GPU found, using the CPU)"
    assert f"device {expected}" in result.output


def test_build_counts_tied_parameters_once():
    result = invoke("build", "configs/chapter/tied_params.yaml", "--device", "cpu")
    assert "1,632 parameters (3,232 counting each tied path)" in result.output


def test_set_overrides_apply():
    result = invoke("validate", "configs/mlp.yaml", "--set", "model.layers.2.out_features=3")
    assert result.output.endswith("(6,147 parameters, output shape [2, 3])\n")


def test_run_is_deterministic_and_writes_its_output(tmp_path):
    out = tmp_path / "out.safetensors"
    first = invoke("run", "configs/mlp.yaml", "--device", "cpu", "--seed", "3", "-o", str(out))
    second = invoke("run", "configs/mlp.yaml", "--device", "cpu", "--seed", "3")
    assert first.exit_code == 0 and second.exit_code == 0
    checksum = [line for line in first.output.splitlines() if line.startswith("checksum")]
    assert checksum and checksum[0] in second.output
    assert "output [2, 10] float32" in first.output
    assert load_file(str(out))["output"].shape == (2, 10)


def test_run_on_an_input_file(tmp_path):
    x = torch.rand(5, 20)
    save_file({"input": x}, str(tmp_path / "x.safetensors"))
    result = invoke("run", "configs/mlp.yaml", "--device", "cpu", "--input", str(tmp_path / "x.safetensors"))
    assert result.exit_code == 0, result.output
    assert "input  [5, 20] float32" in result.output and "output [5, 10] float32" in result.output


def test_run_refuses_the_meta_device():
    result = invoke("run", "configs/mlp.yaml", "--device", "meta")
    assert result.exit_code == 2
    assert "cannot run on the meta device" in result.output


def test_errors_exit_2_with_one_line_each_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("netcfg: 1\ninput: {shape: [2, 3]}\nmodel: {type: linaer, out_features: 2}\n")
    result = invoke("build", str(bad))
    assert result.exit_code == 2
    assert result.output == f"{bad}:3:15: error: unknown layer type 'linaer'; did you mean 'linear'?\n"
    debug = invoke("build", str(bad), "--debug")
    assert debug.exit_code == 2 and "Traceback" in debug.output


def test_absent_device_is_an_error_not_a_fallback():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = invoke("build", "configs/mlp.yaml", "--device", "cuda")
    assert result.exit_code == 2
    assert result.output == "--device cuda: error: device 'cuda' is not available: no CUDA GPU here (present: cpu)\n"


def test_unknown_flag_is_one_line_exit_2():
    result = invoke("build", "configs/mlp.yaml", "--bogus")
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1 and "No such option: --bogus" in result.output


def test_layers_lists_and_details():
    listing = invoke("layers")
    assert listing.exit_code == 0 and "attention" in listing.output and "tensor_reduction" in listing.output
    detail = invoke("layers", "linear")
    assert "out_features: int  (required)" in detail.output
    assert "Size of each output sample." in detail.output
    data = json.loads(invoke("layers", "--format", "json").output)
    assert {d["name"] for d in data} >= {"linear", "conv2d", "attention", "graph", "repeat", "block"}
    assert invoke("layers", "lineer").output.endswith(
        "unknown layer type or initializer 'lineer'; did you mean 'linear'?\n"
    )


def test_schema_is_json_schema_covering_every_layer(tmp_path):
    schema = json.loads(invoke("schema").output)
    mapping = schema["$defs"]["Node"]["discriminator"]["mapping"]
    assert {"linear", "attention", "graph", "repeat", "block"} <= set(mapping)
    assert schema["properties"]["model"]["$ref"] == "#/$defs/Node"
    out = tmp_path / "s.json"
    assert invoke("schema", "-o", str(out)).exit_code == 0
    assert json.loads(out.read_text()) == schema


def test_plugin_layer_runs_only_when_named():
    spec = "configs/plugins/fixed_hidden_mlp.yaml"
    refused = invoke("run", spec, "--device", "cpu")
    assert refused.exit_code == 2 and "a plugin's types need --plugin" in refused.output
    ok = invoke("run", spec, "--device", "cpu", "--plugin", "examples/plugins/fixed_hidden.py")
    assert ok.exit_code == 0, ok.output
    assert "output [] float32" in ok.output


def test_missing_plugin_is_one_line():
    result = invoke("validate", "configs/mlp.yaml", "--plugin", "no_such_plugin_module")
    assert result.exit_code == 2
    assert result.output.startswith("--plugin no_such_plugin_module: error: cannot import plugin")


def test_run_on_an_input_that_does_not_fit_is_one_line(tmp_path):
    save_file({"input": torch.rand(5, 30)}, str(tmp_path / "x.safetensors"))
    result = invoke("run", "configs/mlp.yaml", "--device", "cpu", "--input", str(tmp_path / "x.safetensors"))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith(
        f"--input {tmp_path / 'x.safetensors'}: error: the model cannot take an input [5, 30] float32 "
        "(its spec declares [2, 20] float32): mat1 and mat2 shapes cannot be multiplied"
    )


def test_bare_netcfg_prints_the_help_and_version_is_available():
    bare = invoke()
    assert bare.exit_code == 0 and "Commands:" in bare.output and "error" not in bare.output
    version = invoke("--version")
    assert version.exit_code == 0 and version.output.startswith("netcfg ")


def test_bad_output_paths_are_refused_before_any_work(tmp_path):
    result = invoke("run", "configs/gpt2.yaml", "-o", str(tmp_path / "missing" / "x.safetensors"))
    assert result.exit_code == 2
    assert result.output == (
        f"--output {tmp_path / 'missing' / 'x.safetensors'}: error: directory '{tmp_path / 'missing'}' does not exist\n"
    )
    result = invoke("save", "configs/mlp.yaml", "-o", str(tmp_path))
    assert result.exit_code == 2 and result.output == f"-o {tmp_path}: error: is a directory\n"


def test_run_input_with_token_ids_past_the_vocabulary_says_so(tmp_path):
    ids = tmp_path / "ids.safetensors"
    save_file({"input": torch.tensor([[1, 2, 300]])}, ids)
    result = CliRunner().invoke(app, ["run", str(ROOT / "configs/chapter/tied_params.yaml"), "--input", str(ids)])
    assert result.exit_code == 2
    assert result.stderr.endswith("token ids lie in [1, 300], outside [0, 100) of an embedding with 100 rows\n"), (
        result.stderr
    )
