"""RowReader: rows of a safetensors file's tensors, read by byte range, equal to indexing the
tensor read whole; only the rows asked for are read; a file changed under it is one line."""

from __future__ import annotations

import pickle

import pytest
import torch

from netcfg.errors import CheckpointError
from netcfg.io import rows as rows_module
from netcfg.io.rows import RowReader
from netcfg.io.shards import read_checkpoint
from netcfg.io.tensor_files import save_tensors, write_sharded

ASKED = [[5], [3, 4, 5, 6], [9, 2, 2, 7, 0, 1], list(range(40))[::-1], []]


@pytest.fixture
def tensors():
    gen = torch.Generator().manual_seed(0)
    return {
        "x": torch.randn(40, 3, 5, generator=gen),
        "ids": torch.randint(-5, 100, (40, 7), generator=gen, dtype=torch.int64),
        "half": torch.randn(40, generator=gen).to(torch.bfloat16),
        "flags": torch.rand(40, 2, generator=gen) > 0.5,
    }


@pytest.mark.parametrize("span", [0, rows_module.SPAN], ids=["a read per run of rows", "a read per span"])
def test_rows_equal_indexing_the_whole_tensor(tmp_path, tensors, monkeypatch, span):
    monkeypatch.setattr(rows_module, "SPAN", span)
    save_tensors(tensors, tmp_path / "t.safetensors")
    reader = RowReader(read_checkpoint(tmp_path / "t.safetensors"))
    for name, whole in tensors.items():
        for asked in ASKED:
            got = reader.rows(name, asked)
            assert got.dtype == whole.dtype and torch.equal(got, whole[asked]), (name, asked)


def test_rows_of_a_sharded_index(tmp_path, tensors):
    index = tmp_path / "t.safetensors.index.json"
    write_sharded(tensors, index, {}, max_shard_size=1)
    reader = RowReader(read_checkpoint(index))
    for name, whole in tensors.items():
        assert torch.equal(reader.rows(name, [7, 1, 30]), whole[[7, 1, 30]])


def test_only_the_rows_asked_for_are_read(tmp_path, monkeypatch):
    monkeypatch.setattr(rows_module, "SPAN", 0)
    x = torch.randn(1000, 64)
    save_tensors({"x": x}, tmp_path / "t.safetensors")
    reader = RowReader(read_checkpoint(tmp_path / "t.safetensors"))
    reader.rows("x", [3, 500, 501, 999])
    assert reader.bytes_read == 4 * 64 * 4


def test_a_file_changed_under_the_reader_is_one_line(tmp_path):
    path = tmp_path / "t.safetensors"
    save_tensors({"x": torch.randn(10, 4)}, path)
    reader = RowReader(read_checkpoint(path))
    with open(path, "ab") as f:
        f.write(b"\0" * 8)
    with pytest.raises(CheckpointError, match="the file changed since its header was read"):
        reader.rows("x", [1])


def test_a_file_cut_short_after_opening_is_one_line(tmp_path):
    path = tmp_path / "t.safetensors"
    save_tensors({"x": torch.randn(10, 4)}, path)
    reader = RowReader(read_checkpoint(path))
    reader.rows("x", [0])
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 16)
    with pytest.raises(CheckpointError, match="tensor 'x': the file ends inside its data"):
        reader.rows("x", [9])


def test_a_pickled_reader_opens_its_files_again(tmp_path):
    save_tensors({"x": torch.arange(20.0).reshape(10, 2)}, tmp_path / "t.safetensors")
    reader = RowReader(read_checkpoint(tmp_path / "t.safetensors"))
    reader.rows("x", [0])
    copy = pickle.loads(pickle.dumps(reader))  # a spawned worker's copy: no descriptor of the parent's
    assert copy._fds == {} and torch.equal(copy.rows("x", [4]), torch.tensor([[8.0, 9.0]]))
