"""netcfg's DCP StorageWriter and StorageReader in one process: any box of a tensor lands at its
place in the file and is read back from it; a save through DCP is write_tensors' file."""

from __future__ import annotations

import itertools
import os

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.metadata import ChunkStorageMetadata, MetadataIndex, TensorProperties
from torch.distributed.checkpoint.planner import (
    LoadItemType,
    LoadPlan,
    ReadItem,
    TensorWriteData,
    WriteItem,
    WriteItemType,
)

from netcfg.io import dcp_storage
from netcfg.io.shards import KEY_SET, read_checkpoint
from netcfg.io.tensor_files import layout, write_sharded, write_tensors

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")  # no_dist: one process

FULL = torch.arange(4 * 6 * 5, dtype=torch.float32).reshape(4, 6, 5)
BOXES = [((0, 0, 0), (4, 6, 5)), ((1, 0, 0), (2, 6, 5)), ((0, 2, 0), (4, 3, 5)), ((1, 2, 3), (3, 1, 2)),
         ((3, 5, 4), (1, 1, 1)), ((0, 0, 0), (0, 6, 5))]  # fmt: skip


def cut(tensor: torch.Tensor, offsets, sizes) -> torch.Tensor:
    return tensor[tuple(slice(o, o + s) for o, s in zip(offsets, sizes, strict=True))]


@pytest.mark.parametrize("offsets, sizes", BOXES)
def test_runs_cover_the_box_in_its_own_order(offsets, sizes):
    flat = FULL.reshape(-1)
    got = [flat[first : first + count] for first, count in dcp_storage.runs(FULL.shape, offsets, sizes)]
    expected = cut(FULL, offsets, sizes).reshape(-1)
    assert torch.equal(torch.cat(got) if got else torch.empty(0), expected)


class Resolver:
    """The planner's part a storage layer calls: a box of FULL to write, a tensor to read into."""

    def __init__(self, into=None):
        self.into, self.committed = into, []

    def resolve_data(self, item):
        return cut(FULL, item.tensor_data.chunk.offsets, item.tensor_data.chunk.sizes)  # a view, not contiguous

    def resolve_tensor(self, item):
        return self.into

    def commit_tensor(self, item, tensor):
        self.committed.append(tensor)


def test_boxes_written_at_their_offsets_make_the_file_of_the_whole_tensor(tmp_path):
    write_tensors({"t": FULL}, tmp_path / "whole.safetensors")
    planned = layout({"t": (FULL.dtype, tuple(FULL.shape))}, None, None)
    path = tmp_path / "boxes.safetensors"
    path.write_bytes(planned.header + bytes(planned.size - len(planned.header)))
    writer = dcp_storage.SafetensorsWriter(path, {})
    fd = os.open(path, os.O_WRONLY)
    try:
        for dims0, dims1 in itertools.product([(0, 3), (3, 1)], [(0, 2), (2, 4)]):  # four boxes tile FULL
            chunk = ChunkStorageMetadata(torch.Size([dims0[0], dims1[0], 0]), torch.Size([dims0[1], dims1[1], 5]))
            data = TensorWriteData(chunk, TensorProperties(dtype=FULL.dtype), FULL.shape)
            item = WriteItem(MetadataIndex("t", chunk.offsets), WriteItemType.SHARD, tensor_data=data)
            writer._write_item(fd, item, Resolver(), planned.offsets["t"])
    finally:
        os.close(fd)
    assert path.read_bytes() == (tmp_path / "whole.safetensors").read_bytes()


@pytest.mark.parametrize("offsets, sizes", BOXES)
@pytest.mark.parametrize("contiguous", [True, False])
def test_a_box_is_read_from_its_byte_ranges(tmp_path, monkeypatch, offsets, sizes, contiguous):
    path = tmp_path / "t.safetensors"
    write_tensors({"other": torch.ones(3, dtype=torch.bfloat16), "t": FULL}, path)
    reader = dcp_storage.SafetensorsReader(read_checkpoint(path))
    metadata = reader.read_metadata()
    assert metadata.state_dict_metadata["t"].size == FULL.shape
    into = torch.full(sizes, -1.0) if contiguous else torch.full(sizes[::-1], -1.0).permute(2, 1, 0)
    item = ReadItem(LoadItemType.TENSOR, MetadataIndex("t"), torch.Size([0, 0, 0]), MetadataIndex("t", [0, 0, 0]),
                    torch.Size(offsets), torch.Size(sizes))  # fmt: skip
    resolver = Resolver(into)
    read, preadv = [], os.preadv
    monkeypatch.setattr(os, "preadv", lambda fd, buffers, offset: read.append(n := preadv(fd, buffers, offset)) or n)
    reader.read_data(LoadPlan([item]), resolver).wait()
    assert sum(read) == into.numel() * 4  # the box's bytes, nothing more
    assert torch.equal(into, cut(FULL, offsets, sizes))
    assert [t.data_ptr() for t in resolver.committed] == [into.data_ptr()]


TENSORS = {"b.weight": torch.randn(5, 3), "a.ids": torch.arange(7), "half": torch.randn(4).to(torch.bfloat16),
           "scalar": torch.tensor(2.5, dtype=torch.float64), "empty": torch.zeros(0, 3)}  # fmt: skip
META = {"format": "pt", "netcfg.note": "kept in this order"}


def test_a_save_through_dcp_is_the_file_write_tensors_writes(tmp_path):
    write_tensors(TENSORS, tmp_path / "direct.safetensors", META)
    dcp.save(TENSORS, storage_writer=dcp_storage.SafetensorsWriter(tmp_path / "dcp.safetensors", META), no_dist=True)
    assert (tmp_path / "dcp.safetensors").read_bytes() == (tmp_path / "direct.safetensors").read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["dcp.safetensors", "direct.safetensors"]
    into = {name: torch.empty_like(t) for name, t in TENSORS.items()}
    dcp.load(into, storage_reader=dcp_storage.SafetensorsReader(read_checkpoint(tmp_path / "dcp.safetensors")),
             no_dist=True)  # fmt: skip
    for name, tensor in TENSORS.items():
        assert torch.equal(into[name], tensor), name


def test_a_sharded_save_through_dcp_is_write_sharded_s_set_in_the_given_order(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    order = ["scalar", "b.weight", "half", "a.ids", "empty"]
    ours = {name: TENSORS[name] for name in order}
    names = write_sharded(ours, tmp_path / "a" / "m.safetensors.index.json", META, 40)
    writer = dcp_storage.SafetensorsWriter(tmp_path / "b" / "m.safetensors.index.json", META, order, 40)
    dcp.save(TENSORS, storage_writer=writer, no_dist=True)  # DCP's own order differs: the writer's is kept
    assert len(names) == len(writer.sharded.names) > 2
    one, two = (read_checkpoint(tmp_path / d / "m.safetensors.index.json").metadata[KEY_SET] for d in "ab")
    for mine, theirs in zip(["m.safetensors.index.json", *writer.sharded.names],
                            ["m.safetensors.index.json", *names], strict=True):  # fmt: skip
        data = (tmp_path / "b" / mine).read_bytes().replace(two.encode(), one.encode())
        assert data == (tmp_path / "a" / theirs).read_bytes(), mine


def test_a_failed_save_leaves_nothing_and_the_old_file(tmp_path):
    path = tmp_path / "m.safetensors"
    write_tensors({"old": torch.ones(2)}, path)
    before = path.read_bytes()

    class Broken(dcp_storage.SafetensorsWriter):
        def _write_item(self, fd, item, planner, start):
            raise OSError(28, "No space left on device")

    writer = Broken(path, META)
    with pytest.raises(BaseException, match="No space left on device"):
        dcp.save(TENSORS, storage_writer=writer, no_dist=True)
    writer.abort()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.safetensors"]
