"""netcfg export end to end: the .pt2 loads back with torch.export.load and runs any batch size
with the eager model's outputs; the .onnx runs in onnxruntime within 1e-4; a checkpoint exports
its own weights; refusals are one line and leave no file. The references are the model built
by build_spec (its own forward pass) and the checkpoint file read by the safetensors library."""

from __future__ import annotations

import os
import sys

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from netcfg.actions import export as actions
from netcfg.building.builder import build_spec
from netcfg.cli.app import app
from netcfg.spec.loader import load_spec
from tests.conftest import ROOT

SPEC = """\
netcfg: 1
seed: 5
input: {shape: [1, 6]}
model:
  type: graph
  nodes:
    fc1: {type: linear, out_features: 12}
    act: {type: gelu}
    norm: {type: layernorm}
    fc2: {type: linear, out_features: 6}
    res: {type: add, inputs: [input, fc2]}
    head: {type: linear, out_features: 3}
"""
NAMED = """\
netcfg: 1
input:
  ids: {shape: [1, 5], dtype: int64, high: 50}
  scale: {shape: [1, 1, 1]}
model:
  type: graph
  nodes:
    tok: {type: embedding, num_embeddings: 50, embedding_dim: 8, inputs: ids}
    scaled: {type: mul, inputs: [tok, scale]}
    head: {type: linear, out_features: 3}
    pool: {type: select, dim: 1, index: 0, inputs: scaled}
  output: {logits: head, pooled: pool}
"""
TRAINED = ROOT / "configs/chapter/mlp_trained.safetensors"
needs_onnx = pytest.mark.skipif(
    bool(actions.missing_onnx_packages()), reason="the [onnx] extra (onnx, onnxscript, onnxruntime) is not installed"
)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "small.yaml"
    path.write_text(SPEC)
    return path


def eager(spec_file):
    return build_spec(load_spec(spec_file), device="cpu").model.eval()


def batches(*sizes: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(11)
    return [torch.rand(n, 6, generator=gen) for n in sizes]


def test_pt2_loads_back_and_runs_any_batch(spec_file, tmp_path):
    out = tmp_path / "model.pt2"
    result = invoke("export", spec_file, "-o", out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}: torch.export program" in result.stdout
    assert "input  [batch, 6] float32\noutput [batch, 3] float32\n" in result.stdout
    assert "check  torch.export.load vs PyTorch: max abs diff" in result.stdout
    program = torch.export.load(out)  # a file this test just made
    reference = eager(spec_file)
    with torch.no_grad():
        for x in batches(1, 3, 17):
            torch.testing.assert_close(program.module()(x), reference(x), rtol=0, atol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt2"]  # no temporary file left


def test_checkpoint_exports_its_own_weights(tmp_path):
    out = tmp_path / "trained.pt2"
    result = invoke("export", TRAINED, "-o", out)
    assert result.exit_code == 0, result.output
    state = torch.export.load(out).state_dict
    stored = load_file(TRAINED)
    assert set(stored) <= set(state)
    for name, tensor in stored.items():
        assert torch.equal(state[name], tensor), name


def test_sharded_checkpoint_exports_its_weights(tmp_path):
    index = tmp_path / "mlp.safetensors.index.json"
    saved = invoke("save", ROOT / "configs/mlp.yaml", "-o", index, "--max-shard-size", "10KB", "--seed", "4")
    assert saved.exit_code == 0, saved.output
    result = invoke("export", index, "-o", tmp_path / "mlp.pt2")
    assert result.exit_code == 0, result.output
    state = torch.export.load(tmp_path / "mlp.pt2").state_dict
    shards = sorted(tmp_path.glob("mlp-*.safetensors"))
    assert len(shards) > 1
    for shard in shards:
        for name, tensor in load_file(shard).items():
            assert torch.equal(state[name], tensor), name


def test_checkpoint_refuses_what_it_would_ignore(tmp_path):
    result = invoke("export", TRAINED, "-o", tmp_path / "x.pt2", "--set", "seed=3", "--seed", "4")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "--set: error: does not apply to a checkpoint: the model and its seed are the ones it holds",
        "--seed: error: does not apply to a checkpoint: the model and its seed are the ones it holds",
    ]
    assert not (tmp_path / "x.pt2").exists()


@needs_onnx
def test_onnx_runs_in_onnxruntime_within_1e_4(spec_file, tmp_path):
    import onnx
    import onnxruntime

    out = tmp_path / "model.onnx"  # the format follows the suffix
    result = invoke("export", spec_file, "-o", out)
    assert result.exit_code == 0, result.output
    assert "check  onnxruntime vs PyTorch" in result.stdout
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    reference = eager(spec_file)
    with torch.no_grad():
        for x in batches(1, 4, 9):
            (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
            torch.testing.assert_close(torch.from_numpy(got), reference(x), rtol=0, atol=1e-4)
    model = onnx.load(str(out))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["netcfg.source"] == str(spec_file) and len(meta["netcfg.spec_sha256"]) == 64
    with open(out, "rb") as f:
        assert actions.KINDS["onnx"].recognizes(f.fileno())


def test_onnx_without_its_packages_names_the_extra(spec_file, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # `import onnxscript` raises ImportError
    result = invoke("export", spec_file, "-o", tmp_path / "m.onnx")
    assert result.exit_code == 2
    assert result.stderr.startswith("--format onnx: error: needs the optional packages onnx, onnxscript, onnxruntime")
    assert "missing: onnxscript" in result.stderr and "pip install 'netcfg-torch[onnx]'" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_replaces_only_its_own_exports(spec_file, tmp_path):
    foreign = tmp_path / "notes.pt2"
    foreign.write_text("not a program")
    result = invoke("export", spec_file, "-o", foreign)
    assert result.exit_code == 2
    assert "exists and is not a .pt2 program exported by netcfg" in result.stderr
    assert foreign.read_text() == "not a program"
    import zipfile

    with zipfile.ZipFile(tmp_path / "other.pt2", "w") as archive:  # a zip, but not netcfg's
        archive.writestr("archive/extra/other.json", "{}")
    with open(tmp_path / "other.pt2", "rb") as f:
        assert not actions.KINDS["pt2"].recognizes(f.fileno())
    with open(foreign, "rb") as f:
        assert not actions.KINDS["onnx"].recognizes(f.fileno())


def test_a_layer_that_cannot_be_traced_is_named():
    spec = ROOT / "configs/plugins/fixed_hidden_mlp.yaml"
    out = ROOT / "never.pt2"
    result = invoke("export", spec, "--plugin", ROOT / "examples/plugins/fixed_hidden.py", "-o", out)
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{spec}:10:7: error: layer '0' (fixed_hidden_mlp) failed while exporting: its control flow")
    assert result.stdout == "" and not out.exists()


def test_a_batch_the_model_fixes_cannot_be_dynamic(write_spec, tmp_path):
    path = write_spec(
        "netcfg: 1\ninput: {shape: [1, 3]}\nmodel:\n  type: sequential\n  layers:\n"
        "    - {type: flatten, start_dim: 0}\n    - {type: linear, out_features: 2}\n"
    )
    out = tmp_path / "fixed.pt2"
    result = invoke("export", path, "-o", out)
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"{path}:7:7: error: layer '1' (linear) failed with a batch of 2 (so the batch cannot be dynamic: "
        "export with --static-batch): mat1 and mat2 shapes cannot be multiplied"
    )
    assert not out.exists()
    result = invoke("export", path, "-o", out, "--static-batch")
    assert result.exit_code == 0, result.output
    assert "input  [1, 3] float32" in result.stdout
    assert os.path.getsize(out) > 0


def named_inputs(*sizes: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(3)
    return [(torch.randint(0, 50, (n, 5), generator=gen), torch.rand(n, 1, 1, generator=gen)) for n in sizes]


def twin(model, ids, scale) -> dict:
    """The NAMED spec written by hand, on the built model's weights."""
    x = torch.nn.functional.embedding(ids, model.tok.weight) * scale
    return {"logits": torch.nn.functional.linear(x, model.head.weight, model.head.bias), "pooled": x[:, 0]}


def test_named_inputs_and_outputs_export(write_spec, tmp_path):
    path = write_spec(NAMED)
    out = tmp_path / "named.pt2"
    result = invoke("export", path, "-o", out)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1:5] == ["input  ids [batch, 5] int64", "input  scale [batch, 1, 1] float32",
                          "output logits [batch, 5, 3] float32", "output pooled [batch, 8] float32"]  # fmt: skip
    program = torch.export.load(out).module()
    model = build_spec(load_spec(path), device="cpu").model
    with torch.no_grad():
        for ids, scale in named_inputs(1, 4):
            got, want = program(ids, scale), twin(model, ids, scale)
            assert set(got) == {"logits", "pooled"}
            for name in want:
                torch.testing.assert_close(got[name], want[name], rtol=0, atol=1e-6)


@needs_onnx
def test_named_inputs_and_outputs_in_onnx(write_spec, tmp_path):
    import onnxruntime

    path = write_spec(NAMED)
    out = tmp_path / "named.onnx"
    result = invoke("export", path, "-o", out)
    assert result.exit_code == 0, result.output
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in session.get_inputs()] == [("ids", ["batch", 5]), ("scale", ["batch", 1, 1])]
    assert [o.name for o in session.get_outputs()] == ["logits", "pooled"]
    model = build_spec(load_spec(path), device="cpu").model
    with torch.no_grad():
        for ids, scale in named_inputs(1, 3):
            logits, pooled = session.run(None, {"ids": ids.numpy(), "scale": scale.numpy()})
            want = twin(model, ids, scale)
            torch.testing.assert_close(torch.from_numpy(logits), want["logits"], rtol=0, atol=1e-4)
            torch.testing.assert_close(torch.from_numpy(pooled), want["pooled"], rtol=0, atol=1e-4)


MATRIX_EXP = """\
from typing import Literal

import torch
from torch import nn

import netcfg


class MatrixExpArgs(netcfg.Node):
    type: Literal["matrix_exp"]


class MatrixExp(nn.Module):
    def forward(self, x):
        return torch.linalg.matrix_exp(x.unflatten(-1, (2, 2))).flatten(-2)


@netcfg.register_layer("matrix_exp", args=MatrixExpArgs)
def build(args, xs, ctx):
    return MatrixExp()
"""


@needs_onnx
def test_a_layer_onnx_cannot_express_is_named(write_spec, tmp_path):
    plugin = tmp_path / "matrix_exp_layer.py"
    plugin.write_text(MATRIX_EXP)
    path = write_spec("netcfg: 1\ninput: {shape: [1, 4]}\nmodel:\n  type: sequential\n  layers:\n"
                      "    - {type: linear, out_features: 4}\n    - {type: matrix_exp}\n")  # fmt: skip
    out = tmp_path / "m.onnx"
    result = invoke("export", path, "--plugin", plugin, "-o", out)
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{path}:7:7: error: layer '1' (matrix_exp) failed to export to ONNX: ")
    assert "linalg_matrix_exp" in line and not out.exists()
    assert invoke("export", path, "--plugin", plugin, "-o", tmp_path / "m.pt2").exit_code == 0  # torch.export can
