"""Reading tensors from a checked safetensors header: into new memory, or as views of a map."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from netcfg.errors import CheckpointError, Loc
from netcfg.io.memory import check_fits
from netcfg.io.safetensors_header import Header
from netcfg.io.shards import Checkpoint, file_order, read_checkpoint, single

TORCH_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "U16": torch.uint16, "U32": torch.uint32, "U64": torch.uint64, "C64": torch.complex64,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}  # fmt: skip
SAFETENSORS_NAMES = {v: k for k, v in TORCH_DTYPES.items()}


CHUNK = 256 << 20
"""Bytes per read: Linux reads at most ~2 GiB per call, so a larger tensor takes several (tests lower it)."""


def open_checkpoint(path: str | os.PathLike) -> TensorSource:
    """A safetensors file or a sharded checkpoint's index, checked, as a source of its tensors,
    each read on demand (netcfg.io.shards.read_checkpoint says what is checked first)."""
    return TensorSource(read_checkpoint(path))


class TensorSource:
    """A checkpoint's tensors, read one at a time, CHUNK bytes per read, from whichever file holds
    each: a sharded checkpoint is never read whole into memory before its tensors are placed.

    Files are opened as needed, one at a time (an index may name thousands), and each is checked
    to still have the size its header gave. Use as a context manager, or call close()."""

    def __init__(self, checkpoint: Checkpoint | Header):
        if isinstance(checkpoint, Header):
            checkpoint = single(checkpoint)
        self.checkpoint = checkpoint
        self._open: tuple[Header, object] | None = None

    @property
    def path(self) -> str:
        return self.checkpoint.path

    @property
    def metadata(self) -> dict[str, str]:
        return self.checkpoint.metadata

    @property
    def tensors(self) -> dict:
        """Name -> its header entry (dtype, shape, bytes), every file's."""
        return self.checkpoint.tensors

    def __enter__(self) -> TensorSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None

    def get_tensor(self, name: str) -> torch.Tensor:
        """The tensor `name` in new CPU memory of its own."""
        header, f = self._file(name)
        return read_one(f, header, header.tensors[name])

    def read(self, device: torch.device, names: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Every tensor (or those named) on `device`, checked against its free memory first
        (netcfg.io.memory): each is read into new CPU memory and moved, so the CPU holds one
        extra tensor at most. In file order: each file is read front to back."""
        where = torch.device("cpu") if device.type == "meta" else device
        infos = list(self.tensors.values()) if names is None else [self.tensors[n] for n in names]
        check_fits(infos, where, Loc(self.path))
        out = {}
        for name in self._in_file_order(info.name for info in infos):
            out[name] = self.get_tensor(name).to(where)
        return out

    def copy_into(self, name: str, target: torch.Tensor) -> None:
        """Copy the tensor into `target` (same shape and dtype): read straight into its memory when
        it is contiguous CPU memory, else through one tensor of new CPU memory."""
        header, f = self._file(name)
        info = header.tensors[name]
        if target.device.type == "cpu" and target.is_contiguous() and target.dtype == torch_dtype(header, info):
            if info.nbytes:
                f.seek(header.header_size + info.start)
                _read_exactly(f, memoryview(target.detach().reshape(-1).view(torch.uint8).numpy()), header, info)
            return
        with torch.no_grad():
            target.copy_(read_one(f, header, info))

    def first(self, name: str, count: int) -> torch.Tensor:
        """The first `count` values of the tensor (at most its size), reading only those bytes."""
        header, f = self._file(name)
        info = header.tensors[name]
        tensor = torch.empty(min(count, info.count), dtype=torch_dtype(header, info))
        if tensor.numel():
            f.seek(header.header_size + info.start)
            _read_exactly(f, memoryview(tensor.view(torch.uint8).numpy()), header, info)
        return tensor

    def _in_file_order(self, names) -> list[str]:
        files = {id(h): i for i, h in enumerate(self.checkpoint.files)}
        of = self.checkpoint.header_of
        return sorted(names, key=lambda n: (files[id(of(n))], of(n).tensors[n].start))

    def _file(self, name: str):
        """The header and the open file holding tensor `name` (the file open before is closed)."""
        header = self.checkpoint.header_of(name)
        if self._open is not None and self._open[0] is header:
            return self._open
        self.close()
        try:
            f = open(header.path, "rb", buffering=0)  # noqa: SIM115 (kept open across calls; closed by close())
            if os.fstat(f.fileno()).st_size != header.size:
                f.close()
                raise CheckpointError("the file changed while it was read", Loc(header.path))
        except OSError as exc:
            raise CheckpointError(f"cannot read tensors: {exc.strerror or exc}", Loc(header.path)) from None
        self._open = (header, _Reads(f, header))
        return self._open


class _Reads:
    """An open shard whose read errors are one line naming it."""

    def __init__(self, f, header: Header):
        self.f, self.header = f, header

    def seek(self, offset: int) -> None:
        self.f.seek(offset)

    def readinto(self, buffer) -> int:
        try:
            return self.f.readinto(buffer)
        except OSError as exc:
            raise CheckpointError(f"cannot read tensors: {exc.strerror or exc}", Loc(self.header.path)) from None

    def close(self) -> None:
        self.f.close()


def read_tensors(
    source: Checkpoint | Header, device: torch.device, names: list[str] | None = None
) -> dict[str, torch.Tensor]:
    """Every tensor (or those named), read from the file(s) straight into new memory of its own.

    Their sizes are checked against the free memory first (netcfg.io.memory), from the headers,
    before anything is allocated. Each tensor is read into its final buffer (faster into fresh
    memory than copying from a map), CHUNK bytes per call, and nothing stays backed by the
    file: a model whose weights are the file's pages dies of SIGBUS when another program
    rewrites that file in place."""
    with TensorSource(source) as tensors:
        return tensors.read(device, names)


def read_one(f, header: Header, info) -> torch.Tensor:
    """One tensor into new CPU memory, CHUNK bytes per read."""
    tensor = torch.empty(info.shape, dtype=torch_dtype(header, info))
    if info.nbytes:
        f.seek(header.header_size + info.start)
        _read_exactly(f, memoryview(tensor.reshape(-1).view(torch.uint8).numpy()), header, info)
    return tensor


def _read_exactly(f, buffer: memoryview, header: Header, info) -> None:
    done = 0
    while done < len(buffer):
        n = f.readinto(buffer[done : done + CHUNK])
        if not n:
            raise CheckpointError(f"tensor '{info.name}': the file ends inside its data", Loc(header.path))
        done += n


def torch_dtype(header: Header, info) -> torch.dtype:
    dtype = TORCH_DTYPES.get(info.dtype)
    if dtype is None:
        raise CheckpointError(f"tensor '{info.name}': dtype {info.dtype} is not supported by netcfg", Loc(header.path))
    return dtype


def load_tensors(path: str | os.PathLike, device: str = "cpu"):
    """The tensor, list or dict that save_tensors wrote (any safetensors file or index: a dict)."""
    with open_checkpoint(path) as source:
        kind, names = structure(source.checkpoint)
        tensors = source.read(torch.device(device), names)
    if kind == "tensor":
        return tensors["tensor"]
    if kind == "list":
        return [tensors[n] for n in names]
    return {n: tensors[n] for n in names}


def structure(header: Header | Checkpoint) -> tuple[str, list[str]]:
    """What save_tensors recorded: ("tensor", ["tensor"]), ("list", ["0", "1", ...]), or ("dict",
    names in file order), the last for any other safetensors file."""
    kind = header.metadata.get("netcfg.tensors", "dict")
    names = file_order(header)
    if kind == "tensor" and names == ["tensor"]:
        return "tensor", names
    if kind == "list" and set(names) == {str(i) for i in range(len(names))}:
        return "list", [str(i) for i in range(len(names))]
    return "dict", names


@dataclass(frozen=True)
class Peek:
    """A tensor of a file as `netcfg tensors` shows it: its first values, read alone."""

    name: str
    shape: tuple[int, ...]
    count: int
    """Its number of elements."""
    first: torch.Tensor
    """Its first values (at most the number asked for), in its dtype."""


def peek_tensors(path: str | os.PathLike, count: int = 6) -> tuple[str, list[Peek]]:
    """The structure of a tensor file (see `structure`) and the first `count` values of each
    tensor, reading only those bytes: a 100 GB file's summary allocates nothing large."""
    with open_checkpoint(path) as source:
        kind, names = structure(source.checkpoint)
        peeks = [Peek(n, source.tensors[n].shape, source.tensors[n].count, source.first(n, count)) for n in names]
    return kind, peeks
