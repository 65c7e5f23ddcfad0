"""The README's training demo: a small CNN on scikit-learn's 8x8 digits (the committed
examples/digits/digits.safetensors) reaches its stated validation accuracy in well under a minute."""

from __future__ import annotations

import time

import torch

from netcfg.io.reading import load_tensors
from tests.conftest import ROOT
from tests.train.helpers import run_all

EXAMPLE = ROOT / "examples" / "digits"


def test_the_digits_file_is_the_documented_one():
    data = load_tensors(EXAMPLE / "digits.safetensors")
    assert data["images"].shape == (1797, 1, 8, 8) and data["images"].dtype == torch.float32
    assert data["labels"].shape == (1797,) and data["labels"].dtype == torch.int64
    assert data["images"].min() >= 0 and data["images"].max() <= 1
    assert torch.bincount(data["labels"]).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]  # sklearn's


def test_the_example_cnn_reaches_97_percent_in_under_a_minute(tmp_path):
    began = time.perf_counter()  # one thread (conftest): `--threads 1`, as the README's demo runs
    events = run_all(EXAMPLE / "cnn.yaml", tmp_path / "out")
    seconds = time.perf_counter() - began
    final = events[-1]
    assert final.validation["accuracy"] >= 0.97, final.validation
    assert events[0].validation_samples == 359
    assert seconds < 60
