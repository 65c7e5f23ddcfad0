"""Training other kinds of models: several named inputs and outputs, a next-token language model
(integer token inputs, no separate target), bf16 autocast."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from netcfg.actions.model import build_model
from netcfg.cli.app import app
from netcfg.io.tensor_files import save_tensors
from netcfg.spec.loader import load_spec
from tests.train.helpers import make_spec, run_all

LM = """\
netcfg: 1
input: {shape: [4, 12], dtype: int64, high: 11}
model:
  type: sequential
  layers:
    - {type: embedding, num_embeddings: 11, embedding_dim: 16}
    - {type: linear, out_features: 11}
train:
  data: tokens.safetensors
  batch_size: 4
  steps: 6
  shuffle: false
  loss: {kind: next_token}
  optimizer: {kind: adam, lr: 0.01}
  metrics: [loss, accuracy]
  log_every: 1
"""


def _lm(tmp_path, tokens: torch.Tensor):
    save_tensors({"input": tokens}, tmp_path / "tokens.safetensors")
    (tmp_path / "lm.yaml").write_text(LM)
    return tmp_path / "lm.yaml"


def test_next_token_loss_scores_each_position_against_the_next_token(tmp_path):
    tokens = torch.arange(40 * 12).reshape(40, 12) % 11  # counting: token t+1 follows from token t
    spec = _lm(tmp_path, tokens)
    model = build_model(load_spec(spec)).model
    with torch.no_grad():
        logits = model(tokens[:4])
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 11), tokens[:4, 1:].reshape(-1)).item()
    hits = (logits[:, :-1].argmax(-1) == tokens[:4, 1:]).float().mean().item()
    events = run_all(spec, tmp_path / "out")
    first = json.loads((tmp_path / "out" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["step"] == 1 and first["loss"] == pytest.approx(expected, rel=1e-6)
    assert first["accuracy"] == pytest.approx(hits)
    assert events[-1].step == 6


def test_token_ids_outside_the_declared_range_are_refused(tmp_path):
    tokens = torch.arange(40 * 12).reshape(40, 12) % 12  # 11 is past high: 11
    spec = _lm(tmp_path, tokens)
    result = CliRunner().invoke(app, ["train", str(spec), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "tensor 'input' (the model's input 'input') holds 11, outside [0, 11)" in result.stderr


TWO_INPUTS = """\
netcfg: 1
input:
  a: {shape: [4, 5]}
  b: {shape: [4, 3]}
model:
  type: graph
  nodes:
    fa: {type: linear, out_features: 4, inputs: a}
    fb: {type: linear, out_features: 4, inputs: b}
    sum: {type: add, inputs: [fa, fb]}
    head: {type: linear, out_features: 2, inputs: sum}
  output: {scores: head, hidden: sum}
train:
  data: pairs.safetensors
  inputs: {a: left}
  target: y
  output: scores
  batch_size: 8
  steps: 5
  loss: {kind: l1}
"""


def test_named_inputs_read_their_tensors_and_the_named_output_is_trained(tmp_path):
    gen = torch.Generator().manual_seed(0)
    left, b = torch.randn(32, 5, generator=gen), torch.randn(32, 3, generator=gen)
    save_tensors({"left": left, "b": b, "y": torch.randn(32, 2, generator=gen)}, tmp_path / "pairs.safetensors")
    (tmp_path / "two.yaml").write_text(TWO_INPUTS)
    events = run_all(tmp_path / "two.yaml", tmp_path / "out")
    assert events[-1].step == 5 and events[-1].model
    (tmp_path / "two.yaml").write_text(TWO_INPUTS.replace("  output: scores\n", ""))
    result = CliRunner().invoke(app, ["train", str(tmp_path / "two.yaml"), "--out", str(tmp_path / "other")])
    assert result.exit_code == 2
    assert "the model has 2 outputs (scores, hidden): say which one is trained with `output:`" in result.stderr


@pytest.mark.parametrize(("precision", "dtype"), [("bf16", torch.bfloat16), ("float32", torch.float32)])
def test_bf16_autocast_runs_the_forward_in_bfloat16_and_keeps_float32_weights(tmp_path, monkeypatch, precision, dtype):
    from netcfg.actions import train as actions
    from netcfg.io.reading import load_tensors

    seen = []
    real = actions.named_outputs

    def recording(out, node):
        seen.append(out.dtype)
        return real(out, node)

    monkeypatch.setattr(actions, "named_outputs", recording)
    run_all(make_spec(tmp_path, length="steps: 2", precision=precision), tmp_path / "out")
    assert set(seen) == {dtype}
    assert {t.dtype for t in load_tensors(tmp_path / "out" / "model.safetensors").values()} <= {
        torch.float32,
        torch.int64,
    }
