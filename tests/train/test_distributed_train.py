"""netcfg train --nproc 2 (gloo, 2 CPU processes): the one-process run split over ranks.

Tolerance. The ranks run the same arithmetic as one process on halves of each batch; what differs
is the order of the additions: the gradient of the global batch is the all-reduced sum of two
half-batch gradients instead of one sum over the batch, the metric sums are added rank by rank.
float32 addition is not associative, so after the first step the weights differ in the last bits
(measured: at most 6e-8 after 15 AdamW steps, losses 8e-8 relative); hence rtol 1e-5, atol 1e-6
on the weights and 1e-6 relative on the logged losses. Counts (accuracy, top2) are exact.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from netcfg.actions import distributed as dd
from netcfg.actions import train_dist, train_state
from netcfg.io.reading import load_tensors
from netcfg.spec.loader import load_spec
from tests.conftest import ROOT
from tests.train.helpers import assert_same_run, final_state, make_data, run_all

pytestmark = pytest.mark.slow  # each run starts 2 processes

SPEC = """\
netcfg: 1
input: {shape: [8, 6]}
model:
  type: sequential
  layers:
    - {type: linear, out_features: 16}
    - type: repeat
      times: 2
      body: {type: sequential, layers: [{type: linear, out_features: 16}, {type: tanh}]}
    - {type: linear, out_features: 3}
train:
  data: data.safetensors
  inputs: {input: x}
  target: y
  validation: {fraction: 0.25}
  batch_size: 8
  epochs: 3
  accumulate: 2
  loss: {kind: cross_entropy, label_smoothing: 0.1}
  optimizer: {kind: adamw, lr: 0.01, weight_decay: 0.1, decay_norms_and_biases: false}
  schedule: {kind: cosine, warmup_steps: 3}
  clip_grad_norm: 0.3  # below the gradients' norm at most steps: the global norm decides
  metrics: [loss, accuracy, top2]
  seed: 7
  log_every: 3
  checkpoint: {every: 4, keep: 10}
"""
"""No dropout and no batch norm: both are per rank (dropout draws its own masks on each rank,
batch norm's statistics are each rank's half batch, as with plain DDP), so they cannot match
one process; the repeat's copies are FSDP's units."""


@pytest.fixture(autouse=True)
def forkserver(monkeypatch):
    monkeypatch.setattr(dd, "START_METHOD", "forkserver")  # see tests/distributed/test_distributed.py


def _spec(folder, text: str = SPEC):
    make_data(folder)
    path = folder / "spec.yaml"
    path.write_text(text)
    return path


def _dist(spec, out, strategy: str, resume: bool = False, stop=lambda: False) -> list:
    return list(train_dist.train(load_spec(spec), str(out), 2, strategy, resume=resume, stop=stop, threads=1))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The one-process run, and the same spec on 2 processes with each strategy."""
    import _pytest.monkeypatch

    folder = tmp_path_factory.mktemp("dist")
    spec = _spec(folder)
    with _pytest.monkeypatch.MonkeyPatch.context() as patch:
        patch.setattr(dd, "START_METHOD", "forkserver")
        events = {"one": run_all(spec, folder / "one")}
        for strategy in ("ddp", "fsdp"):
            events[strategy] = _dist(spec, folder / strategy, strategy)
    return spec, folder, events


def _close_runs(a, b) -> None:
    """The same model and metrics lines, up to the order of float additions (see the module's doc)."""
    tensors_a, metrics_a = final_state(a)
    tensors_b, metrics_b = final_state(b)
    assert tensors_a.keys() == tensors_b.keys()
    for name in tensors_a:
        torch.testing.assert_close(tensors_b[name], tensors_a[name], rtol=1e-5, atol=1e-6, msg=name)
    lines_a = [json.loads(line) for line in metrics_a.splitlines()]
    lines_b = [json.loads(line) for line in metrics_b.splitlines()]
    assert [sorted(x.items()) for x in _counts(lines_a)] == [sorted(x.items()) for x in _counts(lines_b)]
    for x, y in zip(lines_a, lines_b, strict=True):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-6), (x, y)


def _counts(lines: list[dict]) -> list[dict]:
    return [{k: v for k, v in line.items() if k != "loss"} for line in lines]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_train_the_one_process_model_on_the_same_global_batch(runs, strategy):
    _, folder, events = runs
    started, finished = events[strategy][0], events[strategy][-1]
    assert started.device == f"cpu x 2 ({strategy})" and started.samples == 72 and started.total_steps == 15
    assert finished.step == 15 and not finished.stopped
    assert finished.validation == pytest.approx(events["one"][-1].validation, rel=1e-6)
    _close_runs(folder / "one", folder / strategy)


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_checkpoints_are_the_one_process_files(runs, strategy):
    _, folder, _ = runs
    one = train_state.listed(str(folder / "one"))
    mine = train_state.listed(str(folder / strategy))
    assert [step for step, _ in mine] == [step for step, _ in one] == [4, 8, 12, 15]
    for (_, a), (_, b) in zip(one, mine, strict=True):
        tensors_a, tensors_b = load_tensors(a), load_tensors(b)
        assert sorted(tensors_a) == sorted(tensors_b)
        for name in tensors_a:
            assert tensors_b[name].dtype == tensors_a[name].dtype and tensors_b[name].shape == tensors_a[name].shape
            if not name.startswith("rng."):  # the ranks reseed their dropout each step
                torch.testing.assert_close(tensors_b[name], tensors_a[name], rtol=1e-5, atol=1e-6, msg=name)
        record_a, record_b = train_state.read_run(a), train_state.read_run(b)
        assert record_b["optimizer"] == record_a["optimizer"]  # param_groups, numbered as one process numbers them
        assert record_b["spec"] == record_a["spec"] and record_b["data"] == record_a["data"]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_resume_after_a_kill_on_two_processes_is_bit_identical(runs, tmp_path, strategy):
    """A kill after step 10: the checkpoints up to step 8 and the metrics lines up to 9 remain."""
    spec, folder, _ = runs
    out = tmp_path / "out"
    shutil.copytree(folder / strategy, out)
    (out / "model.safetensors").unlink()
    for step, path in train_state.listed(str(out)):
        if step > 8:
            os.unlink(path)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text("".join(f"{x}\n" for x in lines if json.loads(x)["step"] <= 9))
    events = _dist(spec, out, strategy, resume=True)
    assert events[0].step == 8 and events[0].resumed_from.endswith("step-000000008.safetensors")
    assert_same_run(folder / strategy, out)


def test_dropout_resumes_exactly_on_two_processes(tmp_path):
    """Dropout draws from (seed, step, rank): a run stopped after its first step and resumed
    draws the masks the uninterrupted one drew (FSDP: no rank's RNG state is restored)."""
    text = SPEC.replace("{type: tanh}", "{type: tanh}, {type: dropout, p: 0.3}").replace("epochs: 3", "epochs: 1")
    spec = _spec(tmp_path, text)
    _dist(spec, tmp_path / "whole", "fsdp")
    assert _dist(spec, tmp_path / "out", "fsdp", stop=lambda: True)[-1].step == 1
    _dist(spec, tmp_path / "out", "fsdp", resume=True)  # FSDP's resume restores no RNG state
    assert_same_run(tmp_path / "whole", tmp_path / "out")


def test_checkpoints_cross_load_between_one_process_and_two(runs, tmp_path):
    """One process stopped at step 1, resumed on 2 (FSDP) and stopped at step 2, resumed in one
    process to the end: the one-process run's model, within the tolerance."""
    spec, folder, _ = runs
    out = tmp_path / "out"
    first = run_all(spec, out, stop=lambda: True)
    assert first[-1].stopped and first[-1].step == 1
    second = _dist(spec, out, "fsdp", resume=True, stop=lambda: True)  # the stop file is there before step 2 ends
    assert second[0].step == 1 and second[-1].stopped and second[-1].step == 2
    run_all(spec, out, resume=True)
    _close_runs(folder / "one", out)


def test_a_rank_failing_is_one_line_exit_2(runs, tmp_path):
    from typer.testing import CliRunner

    from netcfg.cli.app import app

    spec = _spec(tmp_path, SPEC.replace("fraction: 0.25", "fraction: 0.24"))  # 73 samples: a last batch of 1
    result = CliRunner().invoke(app, ["train", str(spec), "--out", str(tmp_path / "out"), "--nproc", "2"])
    assert result.exit_code == 2, result.output
    assert result.stderr == (f"{spec}:16:15: error: each epoch's last batch holds 1 sample(s), fewer than the 2 "
                             "processes: `drop_last: true` leaves it out\n")  # fmt: skip


def test_a_batch_that_does_not_split_is_refused_before_anything_starts(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from netcfg.cli.app import app

    monkeypatch.setattr(dd, "launch", lambda *a: pytest.fail("launched"))
    spec = _spec(tmp_path, SPEC.replace("batch_size: 8", "batch_size: 9"))
    result = CliRunner().invoke(app, ["train", str(spec), "--out", str(tmp_path / "out"), "--nproc", "2"])
    assert result.exit_code == 2
    assert result.stderr == (f"{spec}:16:15: error: the batch (9) is the global batch: it must split evenly over "
                             "the 2 processes of --nproc 2\n")  # fmt: skip
    assert not (tmp_path / "out").exists()
    result = CliRunner().invoke(app, ["train", str(spec), "--out", str(tmp_path / "out"), "--strategy", "fsdp"])
    assert result.exit_code == 2
    assert result.stderr == "--strategy fsdp: error: needs --nproc N: the number of processes\n"


def test_bad_data_files_are_refused_before_anything_starts(tmp_path, monkeypatch):
    """The checks a rank would make from the files' headers, made by the parent (seconds sooner)."""
    from typer.testing import CliRunner

    from netcfg.cli.app import app
    from netcfg.io.tensor_files import save_tensors

    monkeypatch.setattr(train_dist, "_follow", lambda *a: pytest.fail("launched"))
    spec = _spec(tmp_path)
    save_tensors({"x": torch.randn(96, 6)}, tmp_path / "no_target.safetensors")
    (tmp_path / "odd").mkdir()
    make_data(tmp_path / "odd", samples=97)  # 73 to train after the validation's 24: 9 batches of 8 and 1
    cases = {
        "no_target.safetensors": "no tensor 'y'",
        "odd/data.safetensors": "each epoch's last batch holds 1 sample(s), fewer than the 2 processes",
        "missing.safetensors": "no such file",
    }
    for data, words in cases.items():
        out = tmp_path / f"out-{len(words)}"
        args = ["train", str(spec), "--out", str(out), "--nproc", "2", "--data", str(tmp_path / data)]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        assert result.stderr.count("\n") == 1 and words in result.stderr, result.stderr
        assert not out.exists()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigint_on_the_parent_finishes_the_step_saves_once_and_exits_0(tmp_path):
    text = SPEC.replace("epochs: 3", "steps: 100000").replace("log_every: 3", "log_every: 1")
    spec = _spec(tmp_path, text.replace("every: 4,", "every: 100000,"))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "netcfg", "train", str(spec), "--out", str(out), "--nproc", "2", "--threads", "1"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    metrics = out / "metrics.jsonl"
    while process.poll() is None and time.monotonic() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr.decode()
    saved = train_state.listed(str(out))
    assert len(saved) == 1  # the stop's checkpoint, at the step every rank finished
    last = json.loads(metrics.read_text().splitlines()[-1])["step"]
    assert saved[0][0] == last and 3 <= last < 100000
    assert f"stopped at step {last:,} of 100,000" in stderr.decode() and "go on with --resume" in stderr.decode()


def test_fsdp_on_a_model_with_no_unit_is_refused_before_anything_starts(tmp_path, monkeypatch):
    # it was refused inside the ranks, after starting them (16 s from the CLI)
    from typer.testing import CliRunner

    from netcfg.cli.app import app

    monkeypatch.setattr(dd, "launch", lambda *a: pytest.fail("launched"))
    repeat = "    - type: repeat\n      times: 2\n      body: {type: sequential, layers: [{type: linear, "
    repeat += "out_features: 16}, {type: tanh}]}\n"
    assert repeat in SPEC
    spec = _spec(tmp_path, SPEC.replace(repeat, ""))  # no repeat, no block: nothing to shard
    flags = ["--out", str(tmp_path / "out"), "--nproc", "2", "--strategy", "fsdp"]
    result = CliRunner().invoke(app, ["train", str(spec), *flags])
    assert result.exit_code == 2
    assert result.stderr == (
        "--strategy fsdp: error: --strategy fsdp needs units to shard and this model has none (no repeat and no "
        "block template); name some in a shard: section (shard: {units: [linear]}), or use --strategy ddp\n"
    )
    assert not (tmp_path / "out").exists()


def test_fsdp_on_a_low_precision_spec_is_refused_naming_its_dtype(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from netcfg.cli.app import app

    monkeypatch.setattr(dd, "launch", lambda *a: pytest.fail("launched"))
    spec = _spec(tmp_path, SPEC.replace("input: {shape: [8, 6]}", "input: {shape: [8, 6]}\ndtype: bfloat16"))
    flags = ["--out", str(tmp_path / "out"), "--nproc", "2", "--strategy", "fsdp"]
    result = CliRunner().invoke(app, ["train", str(spec), *flags])
    assert result.exit_code == 2
    assert result.stderr == (f"{spec}:3:8: error: --strategy fsdp trains a bfloat16 spec's float32 shards, which a "
                             "checkpoint could not hold: train the float32 spec with `precision: bf16`\n")  # fmt: skip


def test_workers_and_streaming_on_two_processes_change_nothing(runs, tmp_path):
    """Each rank's data-loader workers read its slice of every batch (streamed from the file):
    the run is the one read whole in each rank, bit for bit."""
    spec, folder, _ = runs
    text = SPEC.replace("  seed: 7\n", "  seed: 7\n  workers: 1\n  stream: true\n")
    streamed = _spec(tmp_path, text)
    _dist(streamed, tmp_path / "out", "ddp")
    assert_same_run(folder / "ddp", tmp_path / "out")


def test_the_final_model_of_an_fsdp_run_stores_a_tie_once(tmp_path):
    # rank 0 rebuilds the model from the gathered state with to_empty, which gave each path of a tie its own
    # tensor: model.safetensors held the tied tensor twice (the one-process file holds it once)
    from netcfg.actions.checkpoint import save
    from netcfg.actions.model import build_model

    built = build_model(load_spec(ROOT / "configs/chapter/tied_params.yaml"))
    save(built, tmp_path / "one.safetensors")
    save(train_dist._whole(built, built.model.state_dict()), tmp_path / "rebuilt.safetensors")
    assert load_tensors(tmp_path / "rebuilt.safetensors").keys() == {"embed.weight", "norm.weight", "norm.bias"}
    assert (tmp_path / "rebuilt.safetensors").read_bytes() == (tmp_path / "one.safetensors").read_bytes()
