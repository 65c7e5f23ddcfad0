"""netcfg writes safetensors itself: the same bytes as the reference library, in chunks, every
dtype the format has, and a one-line refusal for the dtypes it has not."""

from __future__ import annotations

import os
import re

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from netcfg.building.devices import BY_NAME
from netcfg.errors import CheckpointError
from netcfg.io import output, tensor_files
from netcfg.io.reading import SAFETENSORS_NAMES
from netcfg.io.tensor_files import write_tensors
from tests.io.test_reading import same, tensors_of_every_dtype


@pytest.mark.parametrize("metadata", [None, {"format": "pt"}], ids=["no-metadata", "metadata"])
def test_the_file_is_the_one_the_safetensors_library_writes(tmp_path, metadata):
    tensors = {**tensors_of_every_dtype(), "é": torch.ones(1), "a\nb": torch.zeros(2, dtype=torch.int64)}
    save_file(tensors, tmp_path / "reference.safetensors", metadata=metadata)
    write_tensors(tensors, tmp_path / "netcfg.safetensors", metadata=metadata)
    assert (tmp_path / "netcfg.safetensors").read_bytes() == (tmp_path / "reference.safetensors").read_bytes()
    back = load_file(tmp_path / "netcfg.safetensors")
    assert set(back) == set(tensors) and all(same(back[k], tensors[k]) for k in tensors)


def test_metadata_is_kept_in_order_so_the_same_save_gives_the_same_bytes(tmp_path):
    metadata = {"b": "1", "a": "2", "format": "pt", "c": "\u00e9\n"}  # the library writes these in a random order
    tensors = {"x": torch.arange(5.0)}
    write_tensors(tensors, tmp_path / "1.safetensors", metadata=metadata)
    write_tensors(tensors, tmp_path / "2.safetensors", metadata=metadata)
    assert (tmp_path / "1.safetensors").read_bytes() == (tmp_path / "2.safetensors").read_bytes()
    with safe_open(tmp_path / "1.safetensors", "pt") as f:
        assert f.metadata() == metadata


def test_writes_of_many_chunks_are_exact(tmp_path, monkeypatch):
    tensors = tensors_of_every_dtype()
    write_tensors(tensors, tmp_path / "one.safetensors")
    monkeypatch.setattr(tensor_files, "CHUNK", 5)  # splits elements across writes
    write_tensors(tensors, tmp_path / "many.safetensors")
    assert (tmp_path / "many.safetensors").read_bytes() == (tmp_path / "one.safetensors").read_bytes()


def test_a_write_that_takes_less_than_given_is_continued(tmp_path, monkeypatch):
    tensors = {"x": torch.randn(100, generator=torch.Generator().manual_seed(0))}
    write_tensors(tensors, tmp_path / "whole.safetensors")
    real = os.write
    monkeypatch.setattr(output.os, "write", lambda fd, data: real(fd, bytes(data)[:3]))  # as a signal may make it
    write_tensors(tensors, tmp_path / "short.safetensors")
    assert (tmp_path / "short.safetensors").read_bytes() == (tmp_path / "whole.safetensors").read_bytes()


def test_views_transposes_and_conjugates_are_written_as_their_values(tmp_path):
    base = torch.arange(12.0).reshape(3, 4)
    z = torch.complex(torch.ones(3), torch.arange(3.0))
    tensors = {"t": base.T, "slice": base[1:, ::2], "conj": z.conj(), "neg": -z.conj()}
    write_tensors(tensors, tmp_path / "v.safetensors")
    back = load_file(tmp_path / "v.safetensors")
    assert all(torch.equal(back[k], tensors[k].resolve_conj().resolve_neg()) for k in tensors)


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
def test_every_dtype_torch_has_is_written_or_refused_in_one_line(tmp_path):
    dtypes = set(BY_NAME.values()) | set(SAFETENSORS_NAMES)
    for dtype in sorted(dtypes, key=str):
        path = tmp_path / "x.safetensors"
        tensor = torch.zeros(3, dtype=dtype)
        if dtype in SAFETENSORS_NAMES:
            write_tensors({"output": tensor}, path, flag="--output")
            assert load_file(path)["output"].dtype == dtype
            continue
        with pytest.raises(CheckpointError) as err:
            write_tensors({"output": tensor}, path, flag="--output")
        name = str(dtype).replace("torch.", "")
        assert str(err.value) == (f"--output {path}: error: tensor 'output' is {name}, which safetensors cannot "
                                  "store (complex64 is its only complex dtype)")  # fmt: skip
    assert {torch.complex32, torch.complex128} == dtypes - set(SAFETENSORS_NAMES)


def test_nothing_is_written_for_a_tensor_that_cannot_be(tmp_path):
    path = tmp_path / "x.safetensors"
    for tensors, message in [
        ({"a": torch.ones(1), "b": torch.ones(1, dtype=torch.complex128)}, "tensor 'b' is complex128"),
        ({"m": torch.empty(2, device="meta")}, "tensor 'm' is on the meta device: it holds no values to write"),
        ({"\ud800": torch.ones(1)}, "'\\ud800' is not valid Unicode text (a lone surrogate)"),
        ({"__metadata__": torch.ones(1)}, "a tensor may not be named '__metadata__'"),
    ]:
        with pytest.raises(CheckpointError, match="^" + re.escape(f"{path}: error: {message}")):
            write_tensors(tensors, path)
        assert list(tmp_path.iterdir()) == []  # no file, no temporary
