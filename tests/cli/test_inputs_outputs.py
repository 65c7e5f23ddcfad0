"""Files in and out of the commands: every -o checked and atomic (schema too), every tensor
read in chunks after a size check, `tensors` reading only what it prints, unsigned inputs and
outputs safetensors cannot hold: one line each, never a traceback, never a hang."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from netcfg.cli.app import app
from netcfg.io import memory
from tests.conftest import CONFIGS, ROOT
from tests.io.test_reading import sparse_file

MLP = str(CONFIGS / "mlp.yaml")
IDS = """netcfg: 1
input: {shape: [2, 5], dtype: int64, high: 100}
model: {type: embedding, num_embeddings: 100, embedding_dim: 4}
"""


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def no_hang():
    def fail(*_):
        raise TimeoutError("blocked (on a pipe?)")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_schema_output_is_checked_like_every_other_output(tmp_path, no_hang):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result = invoke("schema", "-o", fifo)
    assert result.exit_code == 2
    assert result.stderr == (
        f"--output {fifo}: error: not a regular file (a pipe, device or socket): netcfg writes files only\n"
    )
    spec = tmp_path / "mlp.yaml"
    spec.write_text((CONFIGS / "mlp.yaml").read_text())
    result = invoke("schema", "-o", spec)
    assert result.exit_code == 2
    assert result.stderr == (
        f"--output {spec}: error: exists and is not a JSON schema written by netcfg (the spec itself?): netcfg "
        "replaces only its own kind of file; remove it or pick another name\n"
    )
    assert spec.read_text() == (CONFIGS / "mlp.yaml").read_text()
    out = tmp_path / "netcfg.schema.json"
    for _ in range(2):  # a new file, then its own earlier output replaced
        assert invoke("schema", "-o", out).exit_code == 0
    assert json.loads(out.read_text())["title"].startswith("netcfg spec")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlp.yaml", "netcfg.schema.json", "pipe"]


def unsigned_ids(tmp_path, dtype: torch.dtype, values=None):
    path = tmp_path / f"{dtype}.safetensors"
    x = torch.tensor(values or [[1, 2, 3, 4, 5], [6, 7, 8, 9, 99]])
    save_file({"input": x.to(dtype) if dtype != torch.uint64 else x.view(torch.uint64)}, path)
    return path


def checksum(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("checksum"))


def test_unsigned_token_ids_are_read_as_int64_or_refused_in_one_line(tmp_path, write_spec):
    spec = write_spec(IDS)
    expected = checksum(invoke("run", spec, "--input", unsigned_ids(tmp_path, torch.int64)).stdout)
    for dtype in (torch.uint16, torch.uint32, torch.uint64):  # torch computes little with these: read as int64
        result = invoke("run", spec, "--input", unsigned_ids(tmp_path, dtype))
        assert result.exit_code == 0, result.output
        assert checksum(result.stdout) == expected and "input  [2, 5] int64" in result.stdout
    path = unsigned_ids(tmp_path, torch.uint8)  # a dtype torch has in full: given as is, refused by the embedding
    result = invoke("run", spec, "--input", path)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"--input {path}: error: the model cannot take an input [2, 5] uint8")
    path = tmp_path / "past.safetensors"
    save_file({"input": torch.tensor([[-1, 1]]).view(torch.uint64)}, path)  # 2**64 - 1
    result = invoke("run", spec, "--input", path)
    assert result.exit_code == 2
    assert result.stderr == (f"--input {path}: error: holds uint64 values past 2**63-1: torch computes with uint64 "
                             "only as int64, which cannot hold them\n")  # fmt: skip


def test_unsigned_inputs_to_a_float_model_are_one_line(tmp_path):
    for dtype in (torch.uint8, torch.uint16, torch.uint32, torch.uint64):
        path = tmp_path / "x.safetensors"
        save_file({"input": torch.arange(40).reshape(2, 20).to(dtype)}, path)
        result = invoke("run", MLP, "--input", path)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
        assert "the model cannot take an input [2, 20]" in result.stderr


def test_run_input_reads_only_the_input_tensor(tmp_path):
    path = tmp_path / "x.safetensors"
    save_file({"input": torch.rand(2, 20), "other": torch.zeros(1000, 1000)}, path)
    from netcfg.actions import model
    from netcfg.spec.loader import load_spec

    (x,) = model.read_inputs(str(path), load_spec(MLP))
    assert x.shape == (2, 20)


def test_a_complex128_output_is_refused_in_one_line_a_complex64_one_written(tmp_path, write_spec):
    fourier = "netcfg: 1\ninput: {{shape: [2, 8], dtype: {0}}}\ndtype: {0}\nmodel: {{type: fourier}}\n"
    out = tmp_path / "out.safetensors"
    result = invoke("run", write_spec(fourier.format("float64")), "-o", out)
    assert result.exit_code == 2
    assert result.stderr == (f"--output {out}: error: tensor 'output' is complex128, which safetensors cannot store "
                             "(complex64 is its only complex dtype)\n")  # fmt: skip
    assert list(tmp_path.iterdir()) == [tmp_path / "spec.yaml"]  # nothing written, no temporary
    result = invoke("run", write_spec(fourier.format("float32")), "-o", out)
    assert result.exit_code == 0, result.output
    assert load_file(out)["output"].dtype == torch.complex64


def test_tensors_lists_a_list_file(tmp_path):
    from netcfg.io.tensor_files import save_tensors

    save_tensors([torch.zeros(3), torch.arange(8)], tmp_path / "l.safetensors")
    result = invoke("tensors", tmp_path / "l.safetensors")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:] == ["  0: [3] float32 [0, 0, 0]", "  1: [8] int64 [0, 1, 2, 3, 4, 5, ...]"]


# Peak RSS from VmHWM: ru_maxrss would include the parent's (Linux keeps it across fork and exec).
MEASURE = r"""
import json, sys, time
from netcfg.cli.app import main

def peak_mib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) // 1024

for args in json.loads(sys.argv[1]):
    sys.argv = ["netcfg", *args]
    start = time.perf_counter()
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    print("MEASURED", json.dumps([code, peak_mib(), time.perf_counter() - start]), file=sys.stderr, flush=True)
"""


def measured(*commands: list) -> tuple[list, str]:
    """Each command run in turn in one fresh process: [exit code, peak RSS (MiB) so far, seconds]."""
    args = json.dumps([[str(a) for a in c] for c in commands])
    done = subprocess.run([sys.executable, "-c", MEASURE, args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    rows = [json.loads(line.split(" ", 1)[1]) for line in done.stderr.splitlines() if line.startswith("MEASURED")]
    assert len(rows) == len(commands), done.stderr[-3000:]
    return rows, done.stdout + done.stderr


LINEAR_180_GB = "netcfg: 1\ninput: {shape: [1, 300000]}\nmodel: {type: linear, out_features: 150000, bias: false}\n"
PEAK_MIB = 700  # torch imported and a model built: ~250 MiB here; reading whole, the old `tensors` peaked at 2.3 GB


def test_huge_tensors_are_refused_or_peeked_without_allocating_them(tmp_path, write_spec):
    """A 10 GiB tensor's summary reads 24 bytes; a 180 GB tensor is refused by `load`, `run --input`
    and load_tensors before anything is allocated, with its size and the free memory."""
    free = memory.available(torch.device("cpu"))
    if free is None or free >= 180_000_000_000 or not os.path.exists("/proc/self/status"):
        pytest.skip("this machine has 180 GB free, or no /proc to read a peak from")
    ten = tmp_path / "ten.safetensors"
    sparse_file(ten, "w", "F32", [10 << 28], 10 << 30)
    huge = tmp_path / "huge.safetensors"
    sparse_file(huge, "weight", "F32", [150_000, 300_000], 180_000_000_000)
    spec = write_spec(
        "netcfg: 1\ninput: {shape: [1, 300000]}\nmodel: {type: linear, out_features: 150000, bias: false}\n"
    )
    rows, text = measured(["tensors", ten], ["load", huge, "--config", spec], ["run", spec, "--input", huge])
    assert [r[0] for r in rows] == [0, 2, 2], text
    assert all(peak < PEAK_MIB for _, peak, _ in rows), rows
    assert all(seconds < 30 for *_, seconds in rows), rows  # reading 10 GiB whole took 17 s here, then failed
    assert "w: [2684354560] float32 [0, 0, 0, 0, 0, 0, ...]" in text
    needs = "tensor 'weight' F32 [150000, 300000] needs 180,000,000,000 bytes (167.6 GiB), more than the "
    assert f"{huge}: error: {needs}" in text and f"--input {huge}: error: {needs}" in text
    assert text.count(" free on cpu\n") == 2 and "Traceback" not in text
