"""Reading tensors from a checked safetensors header: into new memory, or as views of a map."""

from __future__ import annotations

import contextlib
import mmap
import os
from dataclasses import dataclass

import torch

from netcfg.errors import CheckpointError, Loc
from netcfg.io.memory import check_fits
from netcfg.io.safetensors_header import Header, read_header

TORCH_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "U16": torch.uint16, "U32": torch.uint32, "U64": torch.uint64, "C64": torch.complex64,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}  # fmt: skip
SAFETENSORS_NAMES = {v: k for k, v in TORCH_DTYPES.items()}


CHUNK = 256 << 20
"""Bytes per read: Linux reads at most ~2 GiB per call, so a larger tensor takes several (tests lower it)."""


def read_tensors(header: Header, device: torch.device, names: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Every tensor (or those named), read from the file straight into new memory of its own.

    Their sizes are checked against the free memory first (netcfg.io.memory), from the header,
    before anything is allocated. Each tensor is read into its final buffer (faster into fresh
    memory than copying from a map), CHUNK bytes per call, and nothing stays backed by the
    file: a model whose weights are the file's pages dies of SIGBUS when another program
    rewrites that file in place."""
    where = torch.device("cpu") if device.type == "meta" else device
    infos = list(header.tensors.values()) if names is None else [header.tensors[n] for n in names]
    check_fits(infos, where, Loc(header.path))
    out = {}
    try:
        with open(header.path, "rb", buffering=0) as f:
            if os.fstat(f.fileno()).st_size != header.size:
                raise CheckpointError("the file changed while it was read", Loc(header.path))
            for info in sorted(infos, key=lambda t: t.start):
                out[info.name] = read_one(f, header, info).to(where)
    except OSError as exc:
        raise CheckpointError(f"cannot read tensors: {exc.strerror or exc}", Loc(header.path)) from None
    return out


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


@contextlib.contextmanager
def mapped(header: Header):
    """name -> function returning the tensor's bytes in the file as a tensor (no copy yet).

    For copying into existing tensors (load_into): one copy from the page cache."""
    try:
        with open(header.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size != header.size:
                raise CheckpointError("the file changed while it was read", Loc(header.path))
            memory = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) if size else None
    except OSError as exc:
        raise CheckpointError(f"cannot read tensors: {exc.strerror or exc}", Loc(header.path)) from None
    views = {info.name: _viewer(memory, header, info) for info in header.tensors.values()}
    try:
        yield views
    finally:
        views.clear()
        if memory is not None:
            with contextlib.suppress(BufferError):  # a view still exported: closed with the map's last reference
                memory.close()


def _viewer(memory, header: Header, info):
    dtype = torch_dtype(header, info)

    def view() -> torch.Tensor:
        if not info.nbytes:
            return torch.empty(info.shape, dtype=dtype)
        raw = torch.frombuffer(memory, dtype=torch.uint8, count=info.nbytes, offset=header.header_size + info.start)
        return raw.view(dtype).reshape(info.shape)

    return view


def load_tensors(path: str | os.PathLike, device: str = "cpu"):
    """The tensor, list or dict that save_tensors wrote (any safetensors file: a dict)."""
    header = read_header(path)
    kind, names = structure(header)
    tensors = read_tensors(header, torch.device(device), names)
    if kind == "tensor":
        return tensors["tensor"]
    if kind == "list":
        return [tensors[n] for n in names]
    return {n: tensors[n] for n in names}


def structure(header: Header) -> tuple[str, list[str]]:
    """What save_tensors recorded: ("tensor", ["tensor"]), ("list", ["0", "1", ...]), or ("dict",
    names in file order), the last for any other safetensors file."""
    kind = header.metadata.get("netcfg.tensors", "dict")
    names = [t.name for t in sorted(header.tensors.values(), key=lambda t: t.start)]
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
    header = read_header(path)
    kind, names = structure(header)
    peeks = []
    try:
        with open(header.path, "rb", buffering=0) as f:
            for name in names:
                info = header.tensors[name]
                first = _first(f, header, info, torch_dtype(header, info), min(count, info.count))
                peeks.append(Peek(name, info.shape, info.count, first))
    except OSError as exc:
        raise CheckpointError(f"cannot read tensors: {exc.strerror or exc}", Loc(header.path)) from None
    return kind, peeks


def _first(f, header: Header, info, dtype: torch.dtype, count: int) -> torch.Tensor:
    tensor = torch.empty(count, dtype=dtype)
    if count:
        f.seek(header.header_size + info.start)
        _read_exactly(f, memoryview(tensor.view(torch.uint8).numpy()), header, info)
    return tensor
