"""netcfg's checkpoints through torch.distributed.checkpoint (DCP): a StorageWriter that writes
exactly the file(s) a one-process `netcfg save` writes, and a StorageReader of them.

Writing. DCP's planner decides which rank writes which chunk of which tensor (each rank its own
FSDP shards; a tensor every rank holds, by one of them). The coordinator (rank 0) then plans the
files from the chunks' full shapes and dtypes alone (netcfg.io.tensor_files.layout: the header,
each tensor's offset, the split into shards), creates each file's temporary (netcfg.io.output:
registered, so a killed save leaves nothing behind) at its full size with the header in place,
and sends every rank the temporaries' paths and offsets; each rank writes the bytes of its chunks
at their offsets (a chunk of rows is one byte range; any other box, one range per run of whole
trailing dimensions) and fsyncs. Once every rank has written, the coordinator commits: the file
renamed over the target, or the shards renamed and the index replaced (the commit of a one-process
save). No rank ever holds more than its own chunks.

Reading. The checkpoint's checked header(s) (netcfg.io.shards) say each tensor is one chunk at
offset 0; each rank reads only the byte ranges of the boxes DCP asks for, straight into its
shards' memory when they are contiguous CPU tensors of the file's dtype.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from dataclasses import dataclass, replace

import torch
from torch.distributed.checkpoint import StorageReader, StorageWriter
from torch.distributed.checkpoint.metadata import (
    ChunkStorageMetadata,
    Metadata,
    MetadataIndex,
    StorageMeta,
    TensorProperties,
    TensorStorageMetadata,
)
from torch.distributed.checkpoint.planner import LoadPlan, LoadPlanner, SavePlan, SavePlanner, WriteItemType
from torch.distributed.checkpoint.storage import WriteResult
from torch.futures import Future

from netcfg.errors import CheckpointError, Loc
from netcfg.io import output
from netcfg.io.reading import CHUNK, torch_dtype
from netcfg.io.shards import Checkpoint
from netcfg.io.tensor_files import Layout, ShardedSave, check_output, layout

_FLAGS = os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


def runs(shape, offsets, sizes) -> list[tuple[int, int]]:
    """The box `sizes` at `offsets` of a row-major tensor of `shape` as (first element, count) runs,
    in the box's own row-major order: the dimensions after the last partial one are whole, so each
    run is one slice of that dimension with everything after it."""
    shape, offsets, sizes = list(shape), list(offsets), list(sizes)
    if not all(sizes):
        return []
    cut = len(shape)
    while cut and sizes[cut - 1] == shape[cut - 1]:
        cut -= 1
    if cut == 0:  # the whole tensor (a scalar included)
        return [(0, math.prod(shape))]
    strides = [math.prod(shape[i + 1 :]) for i in range(len(shape))]
    length = sizes[cut - 1] * strides[cut - 1]
    out = []
    for index in itertools.product(*(range(n) for n in sizes[: cut - 1])):
        first = sum((offsets[i] + index[i]) * strides[i] for i in range(cut - 1))
        out.append((first + offsets[cut - 1] * strides[cut - 1], length))
    return out


def _bytes_of(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor's values as contiguous uint8 (a copy only if not contiguous)."""
    return tensor.detach().resolve_conj().resolve_neg().contiguous().reshape(-1).view(torch.uint8)


def _pwrite_all(fd: int, data: torch.Tensor, offset: int) -> None:
    """Write uint8 `data` at `offset`, CHUNK bytes per call (a GPU tensor copied a chunk at a time)."""
    for start in range(0, data.numel(), CHUNK):
        piece = data[start : start + CHUNK]
        _pwrite_view(fd, memoryview((piece if piece.device.type == "cpu" else piece.to("cpu")).numpy()), offset + start)


def _pwrite_view(fd: int, view: memoryview, offset: int) -> None:
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)


# ---------------------------------------------------------------- writing


@dataclass(frozen=True)
class _Placement:
    """What the coordinator sends every rank: the temporaries and where each tensor starts."""

    paths: list[str]
    where: dict[str, tuple[int, int]]
    """Tensor name -> (index in paths, file offset of its first byte)."""
    durable: bool


class SafetensorsWriter(StorageWriter):
    """Writes a state dict (name -> tensor or DTensor) as netcfg's safetensors file, or with
    `max_shard_size` as an index and its shards: the bytes a one-process netcfg save writes.

    `order`: the tensors' names in the order a one-process save is given them (the shards' split
    follows it); `metadata`: the file's (or the index's). Every rank makes one; rank 0 coordinates."""

    def __init__(self, path: str | os.PathLike, metadata: dict[str, str], order: list[str] | None = None,
                 max_shard_size: int | None = None, flag: str = "-o", durable: bool = True):  # fmt: skip
        super().__init__()
        self.path, self.metadata, self.order = path, metadata, order
        self.max_shard_size, self.flag, self.durable = max_shard_size, flag, durable
        self.where = Loc(f"{flag} {path}".strip())
        self.is_coordinator = False
        self.files: list[output.Replacement] = []
        self.sharded: ShardedSave | None = None
        self.committed = False

    def reset(self, checkpoint_id=None) -> None:
        pass

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id) -> bool:
        return False  # given explicitly, never picked by DCP for a checkpoint_id

    def storage_meta(self) -> StorageMeta | None:
        return None

    def set_up_storage_writer(self, is_coordinator: bool, *args, **kwargs) -> None:
        self.is_coordinator = is_coordinator

    def prepare_local_plan(self, plan: SavePlan) -> SavePlan:
        for item in plan.items:
            if item.type == WriteItemType.BYTE_IO:
                raise CheckpointError(f"'{item.index.fqn}' is not a tensor: a safetensors file holds tensors only",
                                      self.where)  # fmt: skip
        return plan

    def prepare_global_plan(self, plans: list[SavePlan]) -> list[SavePlan]:
        """The coordinator plans the files, creates their temporaries, and tells every rank."""
        described = self._described(plans)
        try:
            files = self._create(described)
        except BaseException:
            self.abort()
            raise
        return [replace(plan, storage_data=files) for plan in plans]

    def _described(self, plans: list[SavePlan]) -> dict:
        """name -> (dtype, full shape), in `order` (else as the plans first name them)."""
        found = {}
        for plan in plans:
            for item in plan.items:
                data = item.tensor_data
                found.setdefault(item.index.fqn, (data.properties.dtype, tuple(data.size)))
        names = [n for n in self.order if n in found] if self.order is not None else list(found)
        missing = [n for n in found if n not in names]
        if missing:
            raise CheckpointError(f"tensor '{missing[0]}' is not among the tensors to save", self.where)
        return {name: found[name] for name in names}

    def _create(self, described: dict) -> _Placement:
        if self.max_shard_size is None:
            target = check_output(self.path, self.flag)
            planned = [(layout(described, self.metadata, self.where), target, output.SAFETENSORS)]
        else:
            self.sharded = ShardedSave(described, self.path, self.metadata, self.max_shard_size, self.flag,
                                       self.durable)  # fmt: skip
            self.sharded.begin()
            planned = [(lay, self.sharded.shard_path(i), None) for i, lay in enumerate(self.sharded.layouts)]
        where: dict[str, tuple[int, int]] = {}
        for i, (lay, target, kind) in enumerate(planned):
            self.files.append(self._allocate(lay, target, kind))
            where.update((name, (i, start)) for name, start in lay.offsets.items())
        return _Placement([f.path for f in self.files], where, self.durable)

    def _allocate(self, lay: Layout, target, kind) -> output.Replacement:
        """The file's temporary at its full size, its header written."""
        file = output.Replacement(target, self.where, kind, self.durable)
        try:
            os.ftruncate(file.temporary.fd, lay.size)
            _pwrite_view(file.temporary.fd, memoryview(lay.header), 0)
        except OSError as exc:
            file.discard()
            raise CheckpointError(f"cannot write: {exc.strerror or exc}", self.where) from None
        return file

    def write_data(self, plan: SavePlan, planner: SavePlanner) -> Future[list[WriteResult]]:
        """This rank's chunks, each at its place in the temporaries, then fsynced."""
        files: _Placement = plan.storage_data
        results, opened = [], {}
        try:
            for item in plan.items:
                number, start = files.where[item.index.fqn]
                if number not in opened:
                    opened[number] = os.open(files.paths[number], os.O_WRONLY | _FLAGS)
                results.append(self._write_item(opened[number], item, planner, start))
            if files.durable:
                for fd in opened.values():
                    os.fsync(fd)
        except OSError as exc:
            raise CheckpointError(f"cannot write: {exc.strerror or exc}", self.where) from None
        finally:
            for fd in opened.values():
                os.close(fd)
        done: Future = Future()
        done.set_result(results)
        return done

    def _write_item(self, fd: int, item, planner: SavePlanner, start: int) -> WriteResult:
        data = item.tensor_data
        chunk = planner.resolve_data(item)
        raw = _bytes_of(chunk)
        size = data.properties.dtype.itemsize
        done = 0
        for first, count in runs(data.size, data.chunk.offsets, data.chunk.sizes):
            _pwrite_all(fd, raw[done : done + count * size], start + first * size)
            done += count * size
        return WriteResult(index=item.index, size_in_bytes=raw.numel(), storage_data=None)

    def finish(self, metadata: Metadata, results: list[list[WriteResult]]) -> None:
        """Every rank has written: commit the file, or the shards and then the index."""
        try:
            for file in self.files:
                file.commit()
            if self.sharded is not None:
                self.sharded.write_index()
        except BaseException:
            self.abort()
            raise
        self.committed = True
        if self.sharded is not None:
            self.sharded.finish()

    def abort(self) -> None:
        """A save that failed: its temporaries (and new shards) removed, nothing committed."""
        if self.committed:
            return
        for file in self.files:
            file.discard()
        self.files = []
        if self.sharded is not None:
            self.sharded.abort()


# ---------------------------------------------------------------- reading


class SafetensorsReader(StorageReader):
    """DCP's view of a checked netcfg checkpoint: each tensor one chunk; reads only what is asked."""

    def __init__(self, checkpoint: Checkpoint):
        super().__init__()
        self.checkpoint = checkpoint

    def reset(self, checkpoint_id=None) -> None:
        pass

    @classmethod
    def validate_checkpoint_id(cls, checkpoint_id) -> bool:
        return False

    def read_metadata(self) -> Metadata:
        tensors, storage = {}, {}
        for name, info in self.checkpoint.tensors.items():
            dtype = torch_dtype(self.checkpoint.header_of(name), info)
            zero = torch.Size([0] * len(info.shape))
            tensors[name] = TensorStorageMetadata(TensorProperties(dtype=dtype), torch.Size(info.shape),
                                                  [ChunkStorageMetadata(zero, torch.Size(info.shape))])  # fmt: skip
            storage[MetadataIndex(name, zero)] = name
        return Metadata(state_dict_metadata=tensors, storage_data=storage, storage_meta=StorageMeta())

    def set_up_storage_reader(self, metadata: Metadata, is_coordinator: bool, *args, **kwargs) -> None:
        pass

    def prepare_local_plan(self, plan: LoadPlan) -> LoadPlan:
        return plan

    def prepare_global_plan(self, plans: list[LoadPlan]) -> list[LoadPlan]:
        return plans

    def read_data(self, plan: LoadPlan, planner: LoadPlanner) -> Future[None]:
        with _OpenFiles(self.checkpoint) as files:
            for item in plan.items:
                target = planner.resolve_tensor(item).detach()
                self._read_item(files, item, target)
                planner.commit_tensor(item, target)
        done: Future = Future()
        done.set_result(None)
        return done

    def _read_item(self, files: _OpenFiles, item, target: torch.Tensor) -> None:
        name = item.storage_index.fqn
        header = self.checkpoint.header_of(name)
        info = header.tensors[name]
        dtype = torch_dtype(header, info)
        direct = target.device.type == "cpu" and target.is_contiguous() and target.dtype == dtype
        buffer = target if direct else torch.empty(tuple(item.lengths), dtype=dtype)
        raw = buffer.reshape(-1).view(torch.uint8)
        fd = files.fd(header)
        start = header.header_size + info.start
        done = 0
        for first, count in runs(info.shape, item.storage_offsets, item.lengths):
            n = count * dtype.itemsize
            _pread_all(fd, raw[done : done + n], start + first * dtype.itemsize, header.path, name)
            done += n
        if not direct:
            with torch.no_grad():
                target.copy_(buffer)


class _OpenFiles:
    """The checkpoint's files, each opened once and checked to still have its header's size."""

    def __init__(self, checkpoint: Checkpoint):
        self.checkpoint = checkpoint
        self.fds: dict[str, int] = {}

    def __enter__(self) -> _OpenFiles:
        return self

    def __exit__(self, *exc) -> None:
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)

    def fd(self, header) -> int:
        if header.path not in self.fds:
            try:
                fd = os.open(header.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise CheckpointError(f"cannot read tensors: {exc.strerror or exc}", Loc(header.path)) from None
            self.fds[header.path] = fd
            if os.fstat(fd).st_size != header.size:
                raise CheckpointError("the file changed while it was read", Loc(header.path))
        return self.fds[header.path]


def _pread_all(fd: int, into: torch.Tensor, offset: int, path: str, name: str) -> None:
    view = memoryview(into.numpy())
    done = 0
    while done < len(view):
        try:
            n = os.preadv(fd, [view[done : done + CHUNK]], offset + done)
        except OSError as exc:
            raise CheckpointError(f"cannot read tensors: {exc.strerror or exc}", Loc(path)) from None
        if not n:
            raise CheckpointError(f"tensor '{name}': the file ends inside its data", Loc(path))
        done += n
