"""Resume is exact: a run interrupted anywhere and resumed ends with the same weights and metrics
as one never interrupted (bit for bit), whether it was stopped (Ctrl-C), killed between steps,
killed in the middle of writing a checkpoint, or killed for real (SIGKILL, SIGINT in a process)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from netcfg.actions import train_state
from netcfg.errors import TrainError
from tests.conftest import ROOT
from tests.train.helpers import assert_same_run, make_spec, run_all


class Killed(BaseException):
    """Stands for a kill: nothing after it runs (not even the code that catches Exception)."""


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    spec = make_spec(folder)
    events = run_all(spec, folder / "out")
    return spec, folder / "out", events


class DyingWrite:
    """The checkpoint writer, killed in its `kill`-th call: before the rename (even) or after it (odd)."""

    def __init__(self, real, kill: int):
        self.real, self.kill, self.calls = real, kill, 0

    def __call__(self, tensors, path, metadata=None, flag="", **kw):
        self.calls += 1
        if self.calls - 1 == self.kill and self.kill % 2 == 0:
            raise Killed  # before the rename: the temporary file is all there is of it
        self.real(tensors, path, metadata=metadata, flag=flag, **kw)
        if self.calls - 1 == self.kill:
            raise Killed  # after it: before the old checkpoints are pruned


def _interrupted_run(spec, out, rng: random.Random, events_total: int, writes_total: int, monkeypatch) -> int:
    """Run, killing at random events or in random checkpoint writes, resuming until it finishes;
    return the number of kills."""
    from netcfg.actions.train import train
    from netcfg.spec.loader import load_spec

    kills, resume, real_write = 0, False, train_state.write_tensors
    while True:
        kill_at_event = rng.randrange(events_total)
        monkeypatch.setattr(train_state, "write_tensors", DyingWrite(real_write, rng.randrange(writes_total * 2)))
        try:
            for i, event in enumerate(train(load_spec(spec), str(out), resume=resume)):
                if i == kill_at_event and type(event).__name__ != "Finished":
                    raise Killed
        except Killed:
            kills += 1
            resume = True
            continue
        finally:
            monkeypatch.setattr(train_state, "write_tensors", real_write)
        return kills


def test_kills_at_random_points_then_resume_give_the_same_run(reference, tmp_path, monkeypatch):
    spec, reference_out, events = reference
    rng = random.Random(1234)
    writes = sum(type(e).__name__ == "Saved" for e in events)
    kills = 0
    for attempt in range(3):
        out = tmp_path / f"run{attempt}"
        kills += _interrupted_run(spec, out, rng, len(events), writes, monkeypatch)
        assert_same_run(reference_out, out)
    assert kills >= 10


def _with_workers(spec, folder, workers: int = 2):
    """The reference's spec and data in `folder`, read by data-loader workers (the same run)."""
    path = folder / "spec.yaml"
    path.write_text(spec.read_text() + f"  workers: {workers}\n")
    (folder / "data.safetensors").write_bytes((spec.parent / "data.safetensors").read_bytes())
    return path


def test_kills_at_random_points_with_workers_then_resume_give_the_same_run(reference, tmp_path, monkeypatch):
    spec, reference_out, events = reference
    rng = random.Random(4321)
    writes = sum(type(e).__name__ == "Saved" for e in events)
    kills = _interrupted_run(_with_workers(spec, tmp_path), tmp_path / "out", rng, len(events), writes, monkeypatch)
    assert_same_run(reference_out, tmp_path / "out")
    assert kills >= 3


def test_stop_request_saves_and_resume_finishes_the_same(reference, tmp_path):
    spec, reference_out, events = reference
    total = events[0].total_steps
    for stop_after in (1, total - 1):
        out = tmp_path / f"stop{stop_after}"
        steps = iter(range(1, total + 1))
        stopped = run_all(spec, out, stop=lambda s=steps, k=stop_after: next(s) >= k)
        assert stopped[-1].stopped and stopped[-1].step == stop_after
        assert stopped[-1].checkpoint.endswith(f"step-{stop_after:09d}.safetensors")
        run_all(spec, out, resume=True)
        assert_same_run(reference_out, out)


def test_only_the_last_k_checkpoints_stay(reference):
    _, out, events = reference
    kept = [step for step, _ in train_state.listed(str(out))]
    saved = [e.step for e in events if type(e).__name__ == "Saved"]
    assert kept == saved[-2:] and len(saved) > 2


def test_resume_of_another_spec_is_refused_naming_the_difference(reference, tmp_path):
    spec, _, _ = reference
    out = tmp_path / "out"
    steps = iter(range(100))
    run_all(spec, out, stop=lambda: next(steps) >= 3)
    other = tmp_path / "other.yaml"
    other.write_text(spec.read_text().replace("lr: 0.01", "lr: 0.02"))
    (tmp_path / "data.safetensors").write_bytes((spec.parent / "data.safetensors").read_bytes())
    with pytest.raises(TrainError, match=r"another run: spec\.train\.optimizer\.lr is 0\.01 there, 0\.02 now"):
        run_all(other, out, resume=True)


def _start(spec, out, *flags):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "netcfg", "train", str(spec), "--out", str(out), "--threads", "1",
                             *flags], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip


def _wait_for_step(process, out, step: int) -> None:
    deadline = time.monotonic() + 120
    path = out / "metrics.jsonl"
    while process.poll() is None and time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if any(json.loads(line)["step"] >= step for line in lines[:-1]):
            return
        time.sleep(0.01)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_real_sigkill_and_sigint_then_resume(tmp_path):
    spec = make_spec(tmp_path, length="steps: 80", log_every=1)
    run_all(spec, tmp_path / "reference")
    rng = random.Random(99)
    out = tmp_path / "out"
    process = _start(spec, out)
    _wait_for_step(process, out, rng.randrange(5, 40))
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    process = _start(spec, out, "--resume")
    _wait_for_step(process, out, rng.randrange(45, 75))
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr.decode()
    assert "go on with --resume" in stderr.decode()
    process = _start(spec, out, "--resume")
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr.decode()
    assert_same_run(tmp_path / "reference", out)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_real_sigkill_and_ctrl_c_with_workers_then_resume(tmp_path):
    """Ctrl-C on a terminal reaches the workers too (the whole process group): the run still
    finishes its step, saves and exits 0; a SIGKILL of the training process orphans its workers."""
    spec = make_spec(tmp_path, length="steps: 40", log_every=1)
    run_all(spec, tmp_path / "reference")
    out = tmp_path / "out"
    process = _start(spec, out, "--workers", "2")
    _wait_for_step(process, out, 9)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    process = _start(spec, out, "--resume", "--workers", "2")
    _wait_for_step(process, out, 25)
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr.decode()
    assert "go on with --resume" in stderr.decode()
    assert stderr.decode().count("stopping after this step") == 1  # said by the training process, not its workers
    process = _start(spec, out, "--resume", "--workers", "2")
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr.decode()
    assert_same_run(tmp_path / "reference", out)


def test_a_checkpoint_is_plain_safetensors_with_the_optimizer_state_as_tensors_and_json(reference):
    from safetensors import safe_open

    _, out, _ = reference
    path = train_state.listed(str(out))[-1][1]
    with safe_open(path, framework="pt") as f:  # the safetensors library itself reads it
        names = set(f.keys())
        record = json.loads(f.metadata()["netcfg.train"])
        step = f.get_tensor("optimizer.0.step")
    assert {
        "model.0.weight",
        "model.1.running_mean",
        "rng.torch",
        "optimizer.0.exp_avg",
        "optimizer.0.exp_avg_sq",
    } <= names
    assert record["step"] == 20 and step.item() == 20  # AdamW's own count of its steps
    groups = record["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0] and groups[0]["betas"] == [0.9, 0.999]
    assert record["spec"]["train"]["seed"] == 7 and len(record["data"]) == 64  # the data's sha256
