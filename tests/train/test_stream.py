"""Streaming data and data-loader workers: the same run, bit for bit, as data read whole in the
training process; only the rows of each batch read; bad values found batch by batch, named by
their sample; a sharded data index; a worker that dies is one line."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from typer.testing import CliRunner

from netcfg.actions import train_data
from netcfg.cli.app import app
from netcfg.io import reading
from netcfg.io.rows import RowReader
from netcfg.io.tensor_files import save_tensors, write_sharded
from tests.train.helpers import assert_same_run, make_spec, run_all

ROW_BYTES = 6 * 4 + 8  # a sample of helpers.make_data: x float32 [6] and y int64


def _train(*args):
    return CliRunner().invoke(app, ["train", *[str(a) for a in args]])


def _one_error(result, *parts: str) -> str:
    """The one error line, after the progress notes of a run that had started."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if not line.startswith(("training on", "checkpoint "))]
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A run with the data read whole, in the training process."""
    folder = tmp_path_factory.mktemp("reference")
    spec = make_spec(folder, length="epochs: 3", stream="false")
    run_all(spec, folder / "out")
    return spec, folder / "out"


def _variant(spec, folder, **settings: str):
    text = spec.read_text().replace("  stream: false\n", "")
    text += "".join(f"  {key}: {value}\n" for key, value in settings.items())
    path = folder / "spec.yaml"
    path.write_text(text)
    (folder / "data.safetensors").write_bytes((spec.parent / "data.safetensors").read_bytes())
    return path


@pytest.mark.parametrize(("stream", "workers"), [("true", 0), ("false", 2), ("true", 2)])
def test_streamed_data_and_workers_give_the_same_run_as_data_read_whole(reference, tmp_path, stream, workers):
    spec, reference_out = reference
    run_all(_variant(spec, tmp_path, stream=stream, workers=str(workers)), tmp_path / "out")
    assert_same_run(reference_out, tmp_path / "out")


def test_streaming_reads_only_the_rows_of_the_batches(tmp_path, monkeypatch):
    read, real = [], RowReader.rows

    def counted(self, name, rows):
        tensor = real(self, name, rows)
        read.append(tensor.numel() * tensor.element_size())
        return tensor

    def never(*args, **kw):
        raise AssertionError("streamed data is never read whole")

    monkeypatch.setattr(RowReader, "rows", counted)
    monkeypatch.setattr(reading.TensorSource, "read", never)
    spec = make_spec(tmp_path, length="steps: 3", stream="true")
    spec.write_text(spec.read_text().replace("  validation: {fraction: 0.25}\n", ""))
    run_all(spec, tmp_path / "out")
    assert sum(read) == 3 * 2 * 8 * ROW_BYTES  # 3 steps of 2 batches of 8 samples
    assert os.path.getsize(tmp_path / "data.safetensors") > 96 * ROW_BYTES


def test_auto_streams_data_past_the_threshold(tmp_path, monkeypatch):
    from netcfg.actions.train import prepare
    from netcfg.spec.loader import load_spec

    spec = make_spec(tmp_path)
    loaded = load_spec(spec)
    assert isinstance(prepare(loaded, str(tmp_path / "out"), None, None).data, train_data.Dataset)
    monkeypatch.setattr(train_data, "STREAM_ABOVE", 96 * ROW_BYTES - 1)
    run = prepare(loaded, str(tmp_path / "out"), None, None)
    assert isinstance(run.data, train_data.StreamedDataset) and len(run.data) == 72  # the validation split's rest
    assert isinstance(run.validation, train_data.StreamedDataset) and len(run.validation) == 24


def _bad_data(folder, **tensors):
    gen = torch.Generator().manual_seed(0)
    data = {"x": torch.randn(96, 6, generator=gen), "y": torch.randint(0, 3, (96,), generator=gen), **tensors}
    save_tensors(data, folder / "bad.safetensors")
    return folder / "bad.safetensors"


def _first_step_reading(spec_path, sample: int) -> int:
    """The step (from 1) whose batches first hold file row `sample`, from the run's own order."""
    from netcfg.actions.train import _batches, prepare
    from netcfg.spec.loader import load_spec

    run = prepare(load_spec(spec_path), "unused", None, None)
    rows = torch.arange(len(run.data)) if run.data.rows is None else run.data.rows  # file rows of the samples
    for step in range(run.total_steps):
        if any(sample in rows[index].tolist() for index in _batches(run, step)):
            return step + 1
    raise AssertionError("never read")


@pytest.mark.parametrize(("workers", "value"), [(0, "nan"), (2, "-inf")])
def test_a_nan_in_a_streamed_batch_names_its_sample_and_step(tmp_path, workers, value):
    x = torch.randn(96, 6)
    x[41, 3] = float(value)
    spec = make_spec(tmp_path, stream="true", workers=str(workers))
    data = _bad_data(tmp_path, x=x)
    spec.write_text(spec.read_text().replace("  validation: {fraction: 0.25}\n", ""))
    step = _first_step_reading(spec, 41)
    _one_error(_train(spec, "--data", data, "--out", tmp_path / "out"),
               f"--data {data}: error: {data}: tensor 'x' holds NaN or infinite values at sample 41 "
               f"(step {step}; streamed data is checked as it is read)")  # fmt: skip


def test_a_label_out_of_range_in_streamed_validation_data_names_its_sample(tmp_path):
    y = torch.randint(0, 3, (96,), generator=torch.Generator().manual_seed(1))
    spec = make_spec(tmp_path, stream="true")
    order = torch.randperm(96, generator=torch.Generator().manual_seed(7))  # the split the seed draws
    held = order[:24]
    y[held[5]] = 3
    data = _bad_data(tmp_path, y=y)
    _one_error(_train(spec, "--data", data, "--out", tmp_path / "out"),
               f"the target 'y' (class ids of a 3-class output) holds 3, outside [0, 3) at sample {int(held[5])} "
               "(validation; streamed data is checked as it is read)")  # fmt: skip


def test_a_sharded_data_index_trains_streamed_or_whole_like_one_file(reference, tmp_path):
    spec, reference_out = reference
    from netcfg.io.reading import load_tensors

    tensors = load_tensors(spec.parent / "data.safetensors")
    for stream in ("true", "false"):
        folder = tmp_path / stream
        folder.mkdir()
        path = _variant(spec, folder, stream=stream)
        (folder / "data.safetensors").unlink()
        write_sharded(tensors, folder / "data.safetensors.index.json", {}, max_shard_size=1)  # x and y apart
        path.write_text(path.read_text().replace("data: data.safetensors", "data: data.safetensors.index.json"))
        run_all(path, folder / "out")
        assert_same_run(reference_out, folder / "out")


def test_resume_refuses_a_changed_shard(tmp_path):
    from netcfg.io.reading import load_tensors

    spec = make_spec(tmp_path, length="steps: 4", stream="true")
    tensors = load_tensors(tmp_path / "data.safetensors")
    index = tmp_path / "data.safetensors.index.json"
    write_sharded(tensors, index, {}, max_shard_size=1)
    assert _train(spec, "--data", index, "--out", tmp_path / "out").exit_code == 0
    tensors["y"] = (tensors["y"] + 1) % 3
    write_sharded(tensors, index, {}, max_shard_size=1)
    _one_error(_train(spec, "--data", index, "--out", tmp_path / "out", "--resume"), "written by another run: data is")


def test_resume_may_change_workers_and_streaming(tmp_path, reference):
    spec, reference_out = reference
    path = _variant(spec, tmp_path, stream="true", workers="2")
    steps = iter(range(100))
    assert run_all(path, tmp_path / "out", stop=lambda: next(steps) >= 5)[-1].stopped
    result = _train(path, "--out", tmp_path / "out", "--resume", "--workers", "0", "--set", "train.stream=false",
                    "--threads", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert_same_run(reference_out, tmp_path / "out")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_a_worker_that_dies_is_one_line(tmp_path, monkeypatch):
    real = train_data.StreamedDataset.take

    def dying(self, index, device, reading=""):
        if torch.utils.data.get_worker_info() is not None and reading == "step 3":
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, index, device, reading)

    monkeypatch.setattr(train_data.StreamedDataset, "take", dying)  # the forked workers inherit it
    spec = make_spec(tmp_path, stream="true")
    _one_error(
        _train(spec, "--out", tmp_path / "out", "--workers", "2"),
        "error: a data-loader worker died (",
        "): stopped; --resume goes on from the last checkpoint",
    )


def test_the_fingerprint_of_large_data_samples_it(tmp_path, monkeypatch):
    """Past FULL_HASH_UP_TO bytes the fingerprint reads blocks of the file: the same data gives the
    same one, data made again (other values, same shapes) another, and so does a changed byte in a block."""
    monkeypatch.setattr(train_data, "FULL_HASH_UP_TO", 0)
    monkeypatch.setattr(train_data, "SAMPLE", 64)
    path = tmp_path / "d.safetensors"
    save_tensors({"x": torch.randn(1000, 16)}, path)
    first = train_data.fingerprint(str(path))
    assert train_data.fingerprint(str(path)) == first and len(first) == 64
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # the last block is always read
    path.write_bytes(bytes(data))
    assert train_data.fingerprint(str(path)) != first
    save_tensors({"x": torch.randn(1000, 16)}, path)
    assert train_data.fingerprint(str(path)) != first
