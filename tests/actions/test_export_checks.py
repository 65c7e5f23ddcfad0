"""The parts of export that need no exporter: which files it may replace, the example batch,
the comparison of outputs. References are hand-encoded protobuf bytes and hand-computed values."""

from __future__ import annotations

import math
import os

import pytest
import torch

from netcfg.actions import export
from netcfg.building.builder import build_spec, sample_input
from netcfg.spec.loader import load_spec


def _field(number: int, text: bytes) -> bytes:
    """A length-delimited protobuf field (lengths under 128 bytes)."""
    return bytes([number << 3 | 2, len(text)]) + text


IR_VERSION = bytes([1 << 3 | 0, 10])  # field 1, varint 10


@pytest.mark.parametrize(
    "head, ours",
    [
        (IR_VERSION + _field(2, b"pytorch") + _field(3, b"2.13") + _field(6, b"netcfg.json abc"), True),
        (IR_VERSION + _field(6, b"netcfg.json"), True),
        (IR_VERSION + _field(2, b"pytorch") + _field(7, b"\x00" * 20), False),  # the graph, no doc string
        (IR_VERSION + _field(6, b"exported by someone else"), False),
        (b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", False),  # a varint that never ends
        (b"netcfg: 1\ninput: {shape: [2]}\n", False),  # a spec
        (b"", False),
    ],
)
def test_onnx_files_netcfg_wrote_are_told_apart(tmp_path, head, ours):
    path = tmp_path / "model.onnx"
    path.write_bytes(head)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert export.KINDS["onnx"].recognizes(fd) is ours
    finally:
        os.close(fd)


def test_a_larger_batch_is_the_sample_then_the_next_seeds(write_spec):
    spec = load_spec(write_spec("netcfg: 1\nseed: 9\ninput: {shape: [1, 4]}\nmodel: {type: linear, out_features: 2}\n"))
    built = build_spec(spec, device="cpu")
    (x,) = export.example_inputs(built, 3)
    assert x.shape == (3, 4)
    for row, seed in enumerate((9, 10, 11)):
        assert torch.equal(x[row : row + 1], sample_input(spec, "cpu", seed))
    (same,) = export.example_inputs(built)
    assert torch.equal(same, sample_input(spec, "cpu", 9))


def test_outputs_compare_within_tolerance_of_their_scale():
    tolerance = (1e-4, 1e-4)
    want = torch.tensor([1.0, float("nan"), 100.0, float("inf")])  # scale: 100 (the largest finite |value|)
    close = export._compare([want], [torch.tensor([1.009, float("nan"), 99.995, float("inf")])], 1, tolerance)
    assert close == export.Check(1, pytest.approx(0.009, rel=1e-3), True, 100.0)  # within 1e-4 + 1e-4 x 100
    far = export._compare([want], [torch.tensor([1.0, float("nan"), 100.02, float("inf")])], 1, tolerance)
    assert not far.passed and far.max_abs_diff == pytest.approx(0.02, rel=1e-3)
    one_nan = export._compare([want], [torch.tensor([1.0, 0.0, 100.0, float("inf")])], 1, tolerance)
    assert not one_nan.passed and math.isnan(one_nan.max_abs_diff)
    assert export._compare([want], [want[:2]], 1, tolerance) == export.Check(1, math.inf, False)
    assert export._compare([want], [], 1, tolerance) == export.Check(1, math.inf, False)
