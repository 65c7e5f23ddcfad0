"""--resume with a longer schedule: train.epochs or train.steps may change on resume (everything
else must match); the learning rate of each step is computed from the spec as it is now, so a
cosine schedule spans the new total from the resumed step on; a schedule shorter than the steps
already done is refused."""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from netcfg.actions.train import train
from netcfg.cli.app import app
from netcfg.spec.loader import load_spec
from tests.train.helpers import assert_same_run, make_spec, run_all

STEP_SCHEDULE = "{kind: step, every: 4, gamma: 0.5, warmup_steps: 3}"


def _run(spec, out, *overrides: str, resume: bool = False, stop=lambda: False) -> list:
    return list(train(load_spec(spec, list(overrides)), str(out), resume=resume, stop=stop))


def _spec(folder, length: str, schedule: str | None = None):
    spec = make_spec(folder, length=length, log_every=5)
    if schedule:
        spec.write_text(spec.read_text().replace("{kind: cosine, warmup_steps: 3}", schedule))
    return spec


def test_a_finished_run_extended_equals_the_longer_run_when_the_schedule_ignores_the_length(tmp_path):
    """A step schedule does not depend on the total: 2 epochs, then --set train.epochs=4 and
    --resume, gives the 4-epoch run bit for bit (5 steps an epoch; logs every 5)."""
    spec = _spec(tmp_path, "epochs: 2", STEP_SCHEDULE)
    longer = _run(spec, tmp_path / "longer", "train.epochs=4")
    short = _run(spec, tmp_path / "out")
    assert short[-1].step == 10 and longer[-1].step == 20 and not short[-1].stopped
    resumed = _run(spec, tmp_path / "out", "train.epochs=4", resume=True)
    assert (resumed[0].step, resumed[0].total_steps) == (10, 20)
    assert_same_run(tmp_path / "longer", tmp_path / "out")


def test_the_cosine_schedule_spans_the_new_total_from_the_resumed_step(tmp_path):
    spec = _spec(tmp_path, "steps: 10")
    steps = iter(range(1, 100))
    stopped = _run(spec, tmp_path / "out", stop=lambda: next(steps) >= 5)
    assert stopped[-1].stopped and stopped[-1].step == 5
    resumed = _run(spec, tmp_path / "out", "train.steps=30", resume=True)
    assert resumed[-1].step == 30
    lines = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    logged = {x["step"]: x["lr"] for x in lines if "lr" in x}
    assert sorted(logged) == [5, 10, 15, 20, 25, 30]
    for step, lr in logged.items():  # step 5 ran before the resume, on the 10-step cosine
        total = 10 if step <= 5 else 30
        after, span = step - 1 - 3, total - 3  # 3 warm-up steps
        assert lr == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * after / span)), rel=1e-12), step


def test_a_schedule_as_long_as_the_steps_done_finishes_at_once(tmp_path):
    spec = _spec(tmp_path, "steps: 10")
    steps = iter(range(1, 100))
    _run(spec, tmp_path / "out", stop=lambda: next(steps) >= 6)
    events = _run(spec, tmp_path / "out", "train.steps=6", resume=True)
    assert [type(e).__name__ for e in events] == ["Started", "Finished"] and events[-1].step == 6
    assert (tmp_path / "out" / "model.safetensors").exists()


def _cli(spec, out, *flags):
    return CliRunner().invoke(app, ["train", str(spec), "--out", str(out), "--threads", "1", *flags])


def test_a_shorter_schedule_than_the_steps_done_is_one_line(tmp_path):
    spec = _spec(tmp_path, "epochs: 2")
    assert _cli(spec, tmp_path / "out").exit_code == 0
    result = _cli(spec, tmp_path / "out", "--resume", "--set", "train.steps=7", "--set", "train.epochs=null")
    assert result.exit_code == 2, result.output
    assert result.stderr == (f"{tmp_path / 'out' / 'checkpoints' / 'step-000000010.safetensors'}: error: has done 10 "
                             "steps, more than the 7 the spec's schedule now trains: resume with a schedule at least "
                             "as long\n")  # fmt: skip


def test_what_else_changed_with_the_length_is_refused_by_name(tmp_path):
    spec = _spec(tmp_path, "steps: 4")
    run_all(spec, tmp_path / "out")
    result = _cli(spec, tmp_path / "out", "--resume", "--set", "train.steps=8", "--set", "train.seed=8")
    assert result.exit_code == 2
    assert result.stderr.endswith("error: written by another run: spec.train.seed is 7 there, 8 now; resume with "
                                  "the same spec and data (only train.epochs or train.steps may change)\n")  # fmt: skip
