import json
import pickle
import struct
import time

import pytest
import torch
from safetensors.torch import save_file

from netcfg.errors import CheckpointError
from netcfg.io.safetensors_header import read_header


def test_a_header_length_starting_with_0x80_is_not_taken_for_a_pickle(tmp_path):
    # Found by the property tests: 0x80 is also the first byte of a pickle.
    path = tmp_path / "x.safetensors"
    save_file({"x" * 68: torch.zeros(1)}, str(path))
    assert path.read_bytes()[:1] == b"\x80"
    assert list(read_header(path).tensors) == ["x" * 68]


def test_pickles_and_zip_archives_are_recognized_not_opened(tmp_path):
    pkl = tmp_path / "model.pkl"
    pkl.write_bytes(pickle.dumps({"a": 1}))
    zipped = tmp_path / "model.pt"
    torch.save({"a": torch.zeros(2)}, zipped)
    for path, what in ((pkl, "a Python pickle"), (zipped, "a zip archive")):
        try:
            read_header(path)
        except CheckpointError as exc:
            assert str(exc).startswith(f"{path}: error: {what}")
        else:
            raise AssertionError("accepted")


def _header_file(tmp_path, header: dict | str, data: int):
    raw = (header if isinstance(header, str) else json.dumps(header)).encode()
    path = tmp_path / "h.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(data))
    return path


def test_a_shape_of_many_huge_dimensions_is_refused_without_computing_its_product(tmp_path):
    """100,000 dimensions of 2**62 (a 2 MB header): the whole product took minutes."""
    path = _header_file(tmp_path, {"t": {"dtype": "F32", "shape": [2**62] * 100_000, "data_offsets": [0, 4]}}, 4)
    start = time.process_time()
    with pytest.raises(CheckpointError) as err:
        read_header(path)
    assert time.process_time() - start < 5
    big = ", ".join([str(2**62)] * 4)
    assert (
        str(err.value)
        == f"{path}: error: tensor 't': shape [{big}, ... (100,000 dimensions)] has more than 2**62 elements"
    )


def test_a_zero_dimension_makes_a_shape_of_huge_dimensions_empty(tmp_path):
    path = _header_file(tmp_path, {"t": {"dtype": "F32", "shape": [2**62, 2**62, 0], "data_offsets": [0, 0]}}, 0)
    assert read_header(path).tensors["t"].count == 0


NATURALS = "shape must be a list of non-negative integers, got"


def _entry(dtype='"F32"', shape="[1]", offsets="[0, 4]", extra="") -> str:
    return f'{{"t": {{"dtype": {dtype}, "shape": {shape}, {extra}"data_offsets": {offsets}}}}}'


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (_entry(extra='"shape": [1], '), "tensor 't': duplicate key 'shape'"),
        (_entry()[:-1] + ', "t": {}}', "duplicate tensor name 't' in the header"),
        (_entry(shape="[true]"), f"tensor 't': {NATURALS} [True]"),
        (_entry(shape="[1.0]"), f"tensor 't': {NATURALS} [1.0]"),
        (_entry(shape="[-1]"), f"tensor 't': {NATURALS} [-1]"),
        (_entry(offsets="[false, 4]"), "tensor 't': data_offsets must be [start, end] with 0 <= start <= end, "
                                       "got [False, 4]"),
        (_entry(dtype="4"), "tensor 't': unknown dtype 4"),
        (_entry(shape="[2]"), "tensor 't': F32 [2] needs 8 bytes, its offsets give 4"),
    ],
)  # fmt: skip
def test_each_entry_is_checked_as_before_the_fast_path(tmp_path, header, message):
    path = _header_file(tmp_path, header, 4)
    with pytest.raises(CheckpointError) as err:
        read_header(path)
    assert str(err.value) == f"{path}: error: {message}"
