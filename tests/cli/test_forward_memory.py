"""run and bench refuse, before allocating, a forward pass that would not fit in free memory:
a spec of a few hundred bytes without a parameter whose intermediate tensors take terabytes."""

from __future__ import annotations

import time

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from benchmarks.bench_activation_memory import rss_growth
from netcfg.building import memory
from netcfg.cli.app import app
from tests.conftest import ROOT

# No parameters; [64, 8] upsampled to [64, 1, 8192, 4194304] float32 (8 TiB), with 128 GiB and
# 256 GiB on the way: 16.3 TiB alive at once while the last upsample runs.
HUGE = """\
netcfg: 1
input: {shape: [64, 8]}
model:
  type: sequential
  layers:
    - {type: reshape, shape: [1, 1, 8]}
    - {type: upsample, scale_factor: 1024}
    - {type: upsample, scale_factor: [8, 8]}
    - {type: upsample, scale_factor: [1, 64]}
"""

# [N, 8] -> [N, 1, 64, 512]: 128 KiB a sample.
WIDE = """\
netcfg: 1
input: {shape: [4096, 8]}
model:
  type: sequential
  layers:
    - {type: reshape, shape: [1, 1, 8]}
    - {type: upsample, scale_factor: 64}
"""


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def refused_quickly(*args):
    """Invoke, and the time and peak-RSS growth it took (the CLI and torch are loaded already)."""
    invoke("validate", "configs/mlp.yaml")  # start-up costs out of the way
    timing = {}

    def call():
        start = time.perf_counter()
        timing["result"] = invoke(*args)
        timing["seconds"] = time.perf_counter() - start

    try:
        grown = rss_growth(call)
    except OSError:  # no /proc/self/clear_refs: time only
        call()
        grown = 0
    return timing["result"], timing["seconds"], grown


@pytest.mark.parametrize("command", ["run", "bench"])
def test_a_small_spec_with_huge_intermediates_is_refused_at_once(write_spec, command):
    path = write_spec(HUGE)
    assert len(HUGE) < 324
    result, seconds, grown = refused_quickly(command, path, "--device", "cpu")
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"{path}: error: running this model needs about 16.3 TiB (weights 0 B, activations 16.3 TiB at batch 64, "
        "at their peak in layer '3' (upsample)), "
    )
    assert result.stderr.endswith(" are available on cpu (inspect it with --device meta, or pass --no-memory-check)\n")
    assert seconds < 1.0
    assert grown < 200 * 2**20


def test_inspect_reports_the_planned_peak(write_spec):
    result = invoke("inspect", write_spec(HUGE))
    assert result.exit_code == 0
    assert "memory       inference: weights 0 B + buffers 0 B + activations 16.3 TiB = 16.3 TiB" in result.output


def test_the_batch_given_to_bench_is_the_one_planned(write_spec, monkeypatch):
    monkeypatch.setattr(memory, "available", lambda device: 200 << 20)
    path = write_spec(WIDE.replace("4096", "2"))  # 256 KiB of activations: fits
    result = invoke("bench", path, "--device", "cpu", "--batch", "4096", "--min-time", "0", "--warmup", "0")
    assert result.exit_code == 2
    assert "(weights 0 B, activations 1.0 GiB at batch 4096, at their peak in layer '1' (upsample))" in result.stderr
    assert "200.0 MiB are available on cpu" in result.stderr
    result = invoke("bench", path, "--device", "cpu", "--batch", "16", "--min-time", "0", "--warmup", "0")
    assert result.exit_code == 0, result.output
    result = invoke("bench", path, "--device", "cpu", "--batch", "4096", "--no-memory-check", "--min-time", "0",
                    "--warmup", "0", "--sweep", "batch=1")  # fmt: skip
    assert result.exit_code == 2 and "--batch and --sweep are alternatives" in result.stderr  # the flag is taken


def test_run_plans_the_input_it_is_given(write_spec, monkeypatch, tmp_path):
    monkeypatch.setattr(memory, "available", lambda device: 200 << 20)
    path = write_spec(WIDE)  # its sample input [4096, 8]: 1.0 GiB of activations
    result = invoke("run", path, "--device", "cpu")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{path}: error: running this model needs about 1.0 GiB (weights 0 B, activations ")
    small, large = tmp_path / "small.safetensors", tmp_path / "large.safetensors"
    save_file({"input": torch.rand(2, 8)}, small)
    save_file({"input": torch.rand(1024, 8)}, large)
    result = invoke("run", path, "--device", "cpu", "--input", small)
    assert result.exit_code == 0, result.output
    assert "output [2, 1, 64, 512] float32" in result.output
    result = invoke("run", path, "--device", "cpu", "--input", large)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"--input {large}: error: running this model needs about 256.")
    assert "at batch 1024" in result.stderr
    result = invoke("run", path, "--device", "cpu", "--input", large, "--no-memory-check")
    assert result.exit_code == 0, result.output


def test_an_input_the_model_cannot_take_is_left_to_the_forward_pass(tmp_path):
    wrong = tmp_path / "x.safetensors"
    save_file({"input": torch.rand(5, 30)}, wrong)
    result = invoke("run", "configs/mlp.yaml", "--device", "cpu", "--input", wrong)
    assert result.exit_code == 2
    assert "the model cannot take an input [5, 30] float32" in result.stderr
