"""Bad training input: one line naming the file, tensor or flag and what the model needs, exit 2,
nothing written past the last good checkpoint."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from netcfg.actions import train as actions
from netcfg.actions import train_state
from netcfg.cli.app import app
from netcfg.errors import TrainError
from netcfg.io.tensor_files import save_tensors
from tests.train.helpers import make_spec, run_all


def _train(*args):
    return CliRunner().invoke(app, ["train", *[str(a) for a in args]])


def _one_error(result, *parts: str) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def _data(folder, **tensors):
    gen = torch.Generator().manual_seed(0)
    base = {"x": torch.randn(40, 6, generator=gen), "y": torch.randint(0, 3, (40,), generator=gen)}
    base.update(tensors)
    save_tensors({k: v for k, v in base.items() if v is not None}, folder / "bad.safetensors")
    return folder / "bad.safetensors"


CASES = {
    "missing input tensor": ({"x": None, "z": torch.zeros(40, 6)},
                             ["holds no tensor 'x' for the model's input 'input' (it holds: y, z)"]),
    "input shape": ({"x": torch.zeros(40, 5)}, ["tensor 'x' is [40, 5] float32; "
                                                "the model's input 'input' needs [N, 6] float32"]),
    "input dtype": ({"x": torch.zeros(40, 6, dtype=torch.float64)}, ["is [40, 6] float64", "needs [N, 6] float32"]),
    "target dtype": ({"y": torch.zeros(40)}, ["the target 'y' is float32; "
                                              "the cross_entropy loss needs integer class ids"]),
    "target shape": ({"y": torch.zeros(40, 2, dtype=torch.long)}, ["the target 'y' is [40, 2] int64", "needs [N]"]),
    "label range": ({"y": torch.tensor([0, 1, 2, 3] * 10)}, ["the target 'y' (class ids of a 3-class output) "
                                                             "holds 3, outside [0, 3) (10 value(s) outside)"]),
    "negative label": ({"y": torch.tensor([0, -1] * 20)}, ["holds -1, outside [0, 3)"]),
    "sample counts": ({"y": torch.zeros(39, dtype=torch.long)}, ["different numbers of samples ('x' 40, 'y' 39)"]),
    "empty": ({"x": torch.zeros(0, 6), "y": torch.zeros(0, dtype=torch.long)}, ["the data is empty (0 samples)"]),
    "nan": ({"x": torch.zeros(40, 6).index_fill_(0, torch.tensor([5, 9]), float("nan"))},
            ["tensor 'x' holds NaN or infinite values in 2 sample(s), the first at sample 5"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_bad_data_is_one_line_naming_the_tensor(tmp_path, case):
    tensors, parts = CASES[case]
    spec = make_spec(tmp_path)
    data = _data(tmp_path, **tensors)
    line = _one_error(_train(spec, "--data", data, "--out", tmp_path / "out"), *parts)
    assert line.startswith(f"--data {data}: error: {data}")
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_bad_data_of_the_spec_points_at_its_data_line(tmp_path):
    spec = make_spec(tmp_path)
    _data(tmp_path, x=torch.zeros(40, 5))
    spec.write_text(spec.read_text().replace("data: data.safetensors", "data: bad.safetensors"))
    _one_error(_train(spec, "--out", tmp_path / "out"), f"{spec}:12:9: error:", "tensor 'x' is [40, 5]")


def test_a_loss_turning_nan_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    spec = make_spec(tmp_path)  # a checkpoint every 4 steps
    real, calls = actions.loss_of, []

    def turning_nan(train, out, y):
        calls.append(1)
        loss = real(train, out, y)
        return loss * float("nan") if len(calls) > 11 else loss  # step 6 holds calls 11 and 12

    monkeypatch.setattr(actions, "loss_of", turning_nan)
    with pytest.raises(
        TrainError,
        match=r"the loss is nan at step 6: stopped; the last good checkpoint is .*step-000000004\.safetensors",
    ):
        run_all(spec, tmp_path / "out")
    assert [step for step, _ in train_state.listed(str(tmp_path / "out"))] == [4]
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_resume_from_another_spec_is_one_line_naming_what_differs(tmp_path):
    spec = make_spec(tmp_path, length="steps: 4")
    assert _train(spec, "--out", tmp_path / "out").exit_code == 0
    _one_error(_train(spec, "--out", tmp_path / "out", "--resume", "--set", "train.batch_size=4"),
               "step-000000004.safetensors: error: written by another run: "
               "spec.train.batch_size is 8 there, 4 now")  # fmt: skip


def test_resume_with_other_data_is_refused(tmp_path):
    spec = make_spec(tmp_path, length="steps: 4")
    assert _train(spec, "--out", tmp_path / "out").exit_code == 0
    data = _data(tmp_path)
    _one_error(_train(spec, "--out", tmp_path / "out", "--resume", "--data", data),
               "written by another run: data is")  # fmt: skip


@pytest.mark.parametrize(
    ("setup", "flags", "message"),
    [
        ("run", [], "holds a training run already: pass --resume to go on with it, or choose another --out"),
        ("none", ["--resume"], "no training run to resume in"),
        ("file", [], "exists and is not a directory"),
    ],
)
def test_out_directory_problems(tmp_path, setup, flags, message):
    spec = make_spec(tmp_path, length="steps: 2")
    out = tmp_path / "out"
    if setup == "run":
        assert _train(spec, "--out", out).exit_code == 0
    elif setup == "file":
        out.write_text("")
    _one_error(_train(spec, "--out", out, *flags), f"--out {out}: error: {message}")


def test_a_spec_without_train_section(tmp_path):
    spec = tmp_path / "plain.yaml"
    spec.write_text("netcfg: 1\ninput: {shape: [2, 4]}\nmodel: {type: linear, out_features: 2}\n")
    _one_error(_train(spec, "--out", tmp_path / "out"), "the spec has no `train:` section")


def test_inputs_naming_no_model_input(tmp_path):
    spec = make_spec(tmp_path)
    spec.write_text(spec.read_text().replace("inputs: {input: x}", "inputs: {inputt: x}"))
    _one_error(_train(spec, "--out", tmp_path / "out"), "`inputs` names 'inputt'", "did you mean 'input'?")


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one_and_resume_goes_on(tmp_path, monkeypatch):
    import errno
    import os

    from netcfg.errors import InputError
    from netcfg.io import output
    from tests.train.helpers import assert_same_run

    spec = make_spec(tmp_path)  # checkpoints at steps 4, 8, ...
    run_all(spec, tmp_path / "reference")
    real, real_save, saves = output.Writer.write, train_state.write_tensors, []

    def counted(*args, **kw):
        saves.append(1)
        return real_save(*args, **kw)

    def full(self, data):
        if len(saves) >= 2:  # the second checkpoint
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(self, data)

    monkeypatch.setattr(train_state, "write_tensors", counted)
    monkeypatch.setattr(output.Writer, "write", full)
    with pytest.raises(InputError, match="cannot write: No space left on device"):
        run_all(spec, tmp_path / "out")
    monkeypatch.setattr(output.Writer, "write", real)
    folder = tmp_path / "out" / "checkpoints"
    assert sorted(os.listdir(folder)) == ["step-000000004.safetensors"]  # no temporary file left either
    run_all(spec, tmp_path / "out", resume=True)
    assert_same_run(tmp_path / "reference", tmp_path / "out")


def test_a_batch_pytorch_cannot_train_on_is_one_line_and_drop_last_leaves_it_out(tmp_path):
    spec = make_spec(tmp_path)  # 72 training samples: batch 71 leaves a last batch of one for batchnorm
    failed = _train(spec, "--out", tmp_path / "out", "--set", "train.batch_size=71")
    assert failed.exit_code == 2 and "Traceback" not in failed.output
    last = failed.stderr.splitlines()[-1]  # after the line saying what the run is
    assert ":12:3: error: step 1 (a batch of 1) failed: Expected more than 1 value per channel when training" in last
    assert last.endswith("; `drop_last: true` leaves out partial batches")
    result = _train(spec, "--out", tmp_path / "out", "--resume", "--set", "train.batch_size=71",
                    "--set", "train.drop_last=true")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "trained 4 steps" in result.stdout
