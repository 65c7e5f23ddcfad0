"""Writing tensor files: netcfg writes the safetensors format itself, in chunks, atomically.

The format: 8 bytes little-endian header length N, N bytes of JSON header padded with spaces to
a multiple of 8, then the tensors' bytes. Tensors go in the order the safetensors library writes
them (by dtype, widest first, then by name), so each starts at a multiple of its element size,
and the header is the library's compact JSON: the file is the one safetensors.torch.save_file
writes for the same tensors and metadata (except the metadata's order, random in the library,
kept as given here), and safetensors.torch.load_file reads it.

Written here rather than by save_file so that the one temporary file is netcfg's own (save_file
writes a `.tmpXXXXXX` of its own, which a kill leaves behind and nothing can prove is a leftover)
and each tensor goes from its own memory to the file CHUNK bytes at a time (a GPU tensor is
copied to the CPU a chunk at a time, never whole; Linux writes at most ~2 GiB per call anyway).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path

from netcfg.errors import CheckpointError, Loc
from netcfg.io import output, shards, temporaries
from netcfg.io.safetensors_header import MAX_HEADER, METADATA, read_header

CHUNK = 256 << 20
"""Bytes per write (and per read, netcfg.io.reading.CHUNK): tests lower it to exercise many chunks."""

# The safetensors library's order of dtypes (its Dtype enum), widest last: written widest first.
_RANK = {
    "BOOL": 0, "U8": 1, "I8": 2, "F8_E5M2": 3, "F8_E4M3": 4, "I16": 7, "U16": 8, "F16": 9, "BF16": 10,
    "I32": 11, "U32": 12, "F32": 13, "C64": 14, "F64": 15, "I64": 16, "U64": 17,
}  # fmt: skip


def write_tensors(
    tensors: dict, path: str | os.PathLike, metadata: dict | None = None, flag: str = "", durable: bool = True
) -> None:
    """Save a dict of name -> tensor as safetensors without ever leaving a half-written file.

    Everything is checked before anything is written (names, dtypes, devices); then a
    temporary file beside the target is written, fsynced and renamed over it (netcfg.io.output).
    `durable=False` skips the fsyncs (benchmarks only)."""
    target = check_output(path, flag)
    where = Loc(f"{flag} {path}".strip())
    header, order = _layout(tensors, metadata, where)
    with output.replacing(target, where, output.SAFETENSORS, durable) as out:
        out.write(header)
        for tensor in order:
            _write_data(out, tensor)


def _layout(tensors: dict, metadata: dict | None, where: Loc) -> tuple[bytes, list]:
    """The header bytes (length prefix included) and the tensors in file order."""
    planned = layout(_described(tensors, where), metadata, where)
    return planned.header, [tensors[name] for name in planned.names]


def _described(tensors: dict, where: Loc) -> dict:
    """name -> (dtype, shape) of tensors that hold values."""
    for name, tensor in tensors.items():
        if tensor.device.type == "meta":
            raise CheckpointError(f"tensor '{name}' is on the meta device: it holds no values to write", where)
    return {name: (tensor.dtype, tuple(tensor.shape)) for name, tensor in tensors.items()}


@dataclass(frozen=True)
class Layout:
    """A safetensors file planned from its tensors' dtypes and shapes alone."""

    header: bytes
    """Length prefix included: the data starts at len(header)."""
    names: list[str]
    """The tensors in file order."""
    offsets: dict[str, int]
    """Tensor name -> the file offset of its first byte."""
    size: int
    """Bytes of the whole file."""


def layout(described: dict, metadata: dict | None, where: Loc) -> Layout:
    """The file for tensors described as name -> (torch dtype, shape), in the library's order."""
    from netcfg.io.reading import SAFETENSORS_NAMES

    entries = []
    for name, (torch_dtype, shape) in described.items():
        if not isinstance(name, str) or name == METADATA:
            raise CheckpointError(f"a tensor may not be named {name!r} (safetensors names are text, "
                                  f"'{METADATA}' is reserved)", where)  # fmt: skip
        dtype = SAFETENSORS_NAMES.get(torch_dtype)
        if dtype is None:
            spelled = str(torch_dtype).replace("torch.", "")
            why = "complex64 is its only complex dtype" if torch_dtype.is_complex else "it has no such dtype"
            raise CheckpointError(f"tensor '{name}' is {spelled}, which safetensors cannot store ({why})", where)
        entries.append((_utf8(name, where), dtype, name, list(shape), _nbytes(torch_dtype, shape)))
    entries.sort(key=lambda e: (-_RANK[e[1]], e[0]))
    header: dict = {}
    if metadata is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise CheckpointError("safetensors metadata maps strings to strings", where)
        header[METADATA] = metadata
    offset, starts = 0, {}
    for _, dtype, name, shape, size in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        starts[name] = offset
        offset += size
    text = _utf8(json.dumps(header, separators=(",", ":"), ensure_ascii=False), where)
    text += b" " * (-len(text) % 8)
    if len(text) > MAX_HEADER:
        raise CheckpointError(f"the header would take {len(text):,} bytes, past the {MAX_HEADER:,}-byte limit "
                              "of safetensors readers (too many tensors or too much metadata)", where)  # fmt: skip
    head = struct.pack("<Q", len(text)) + text
    return Layout(head, [e[2] for e in entries], {n: len(head) + s for n, s in starts.items()}, len(head) + offset)


def _nbytes(dtype, shape) -> int:
    return math.prod(shape) * dtype.itemsize


def _utf8(text: str, where: Loc) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise CheckpointError(f"{ascii(text)[:80]} is not valid Unicode text (a lone surrogate): safetensors "
                              "stores UTF-8", where) from None  # fmt: skip


def _write_data(out: output.Writer, tensor) -> None:
    """The tensor's bytes, CHUNK at a time, from its own memory (a copy only if not contiguous)."""
    import torch

    if not tensor.numel():
        return
    flat = tensor.detach().resolve_conj().resolve_neg().contiguous().reshape(-1).view(torch.uint8)
    for start in range(0, flat.numel(), CHUNK):
        piece = flat[start : start + CHUNK]
        if piece.device.type != "cpu":
            piece = piece.to("cpu")
        out.write(piece.numpy())


def check_output(path: str | os.PathLike, flag: str = "") -> Path:
    """Refuse an output path that cannot take a safetensors file, before any work is done for it
    (netcfg.io.output.check_output). A symbolic link is followed: its target is replaced."""
    return output.check_output(path, flag, output.SAFETENSORS)


def save_tensors(obj, path: str | os.PathLike) -> None:
    """Save one tensor, a list of tensors, or a dict of str -> tensor as safetensors.

    The file is plain safetensors (readable by safetensors.torch.load_file); its metadata
    records which of the three it was, so load_tensors returns the same structure."""
    import torch  # here: importing this module needs no torch

    if isinstance(obj, torch.Tensor):
        tensors, kind = {"tensor": obj}, "tensor"
    elif isinstance(obj, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in obj):
        tensors, kind = {str(i): t for i, t in enumerate(obj)}, "list"
    elif isinstance(obj, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        if METADATA in obj:
            raise CheckpointError(f"a tensor may not be named '{METADATA}' (reserved by safetensors)", Loc(str(path)))
        tensors, kind = dict(obj), "dict"
    else:
        raise CheckpointError("save_tensors takes a tensor, a list of tensors, or a dict of str -> tensor",
                              Loc(str(path)))  # fmt: skip
    write_tensors(tensors, path, metadata={"netcfg.tensors": kind})


# ---------------------------------------------------------------- sharded checkpoints


def check_index_output(path: str | os.PathLike, flag: str = "") -> Path:
    """Refuse an index path that is not NAME.index.json or cannot take an index (check_output)."""
    where = Loc(f"{flag} {path}".strip())
    if not shards.is_index_name(path):
        raise CheckpointError("a sharded checkpoint is written as its index: name it NAME.safetensors.index.json "
                              "(the shards go beside it)", where)  # fmt: skip
    return output.check_output(path, flag, output.SHARD_INDEX)


def write_sharded(
    tensors: dict, path: str | os.PathLike, metadata: dict, max_shard_size: int, flag: str = "", durable: bool = True
) -> list[str]:
    """Save a dict of name -> tensor as shards of at most `max_shard_size` bytes of tensor data (a
    larger tensor gets a shard of its own) and an index naming them, as a set: the shards get new
    names (holding a random id), then the index is replaced atomically, committing them; then the
    files of the set the index named before are removed, if netcfg provably wrote them (their
    names and headers hold the old index's id). The set is recorded first (netcfg.io.temporaries),
    so a save killed at any point is undone, or finished, by the next write into that folder: the
    index names the old set or the new one, whole. Returns the shard file names.

    The shards go beside `path` as named (if it is a symbolic link, the file it points to is
    replaced): readers look for them in the folder of the index they were given."""
    save = ShardedSave(_described(tensors, Loc(f"{flag} {path}".strip())), path, metadata, max_shard_size, flag,
                       durable)  # fmt: skip
    save.begin()
    try:
        for i, planned in enumerate(save.layouts):
            with output.replacing(save.shard_path(i), save.where, None, durable) as out:
                out.write(planned.header)
                for name in planned.names:
                    _write_data(out, tensors[name])
        save.write_index()
    except BaseException:
        save.abort()
        raise
    save.finish()
    return save.names


class ShardedSave:
    """write_sharded's steps, for shards not written front to back by one writer: the plan (every
    check, before anything is written), begin (the set recorded), the shards written as
    save.names (by whoever), write_index (the commit), finish (the old set removed), or abort."""

    def __init__(self, described: dict, path, metadata: dict, max_shard_size: int, flag: str = "",
                 durable: bool = True):  # fmt: skip
        self.target = check_index_output(path, flag)
        self.where = Loc(f"{flag} {path}".strip())
        self.durable = durable
        groups = _split(described, max_shard_size, self.where)
        self.index_path = shard_folder(path) / os.path.basename(path)
        self.folder = str(self.index_path.parent)
        self.set_id, self.names = _new_names(self.folder, _stem(self.index_path.name), len(groups))
        shard_meta = {"format": "pt", shards.KEY_SET: self.set_id}
        self.layouts = [layout(group, shard_meta, self.where) for group in groups]
        self.index = _index_bytes(described, groups, self.names, metadata, self.set_id, self.where)
        self.old: list[str] = []
        self.record: temporaries.FileSet | None = None

    def shard_path(self, i: int) -> Path:
        return self.index_path.parent / self.names[i]

    def begin(self) -> None:
        self.old = _old_set(self.index_path)
        self.record = temporaries.begin_set(self.folder, self.index_path.name, self.set_id, self.names, self.old)

    def write_index(self) -> None:
        with output.replacing(self.target, self.where, output.SHARD_INDEX, self.durable) as out:
            out.write(self.index)

    def finish(self) -> None:
        _remove(self.folder, self.old)
        self._end()

    def abort(self) -> None:
        _remove(self.folder, self.names)
        self._end()

    def _end(self) -> None:
        if self.record is not None:
            temporaries.end_set(self.record)
            self.record = None


def _split(described: dict, limit: int, where: Loc) -> list[dict]:
    """Tensors in order, a new shard whenever the next would take the current one past `limit`."""
    groups: list[dict] = [{}]
    size = 0
    for name, (dtype, shape) in described.items():
        nbytes = _nbytes(dtype, shape)
        if groups[-1] and size + nbytes > limit:
            groups.append({})
            size = 0
        groups[-1][name] = (dtype, shape)
        size += nbytes
    if len(groups) > shards.MAX_SHARDS:
        raise CheckpointError(f"would write {len(groups):,} shards, more than the {shards.MAX_SHARDS:,} an index "
                              "may name: raise --max-shard-size", where)  # fmt: skip
    return groups


def shard_folder(index: str | os.PathLike) -> Path:
    """The folder of an index's shards: the one holding the index as named (its real path)."""
    return Path(os.path.realpath(os.path.dirname(os.path.abspath(index))))


def _stem(index_name: str) -> str:
    """model.safetensors.index.json -> model (cut to 180 bytes: a shard's name fits in 255)."""
    stem = index_name.removesuffix(".index.json").removesuffix(".safetensors")
    return stem.encode("utf-8", "surrogateescape")[:180].decode("utf-8", "ignore") or "model"


def _new_names(folder: str, stem: str, count: int) -> tuple[str, list[str]]:
    """A random id and the shard names holding it, none of which exists yet."""
    while True:
        set_id = secrets.token_hex(6)
        names = [f"{stem}-{set_id}-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]
        if not any(os.path.lexists(os.path.join(folder, n)) for n in names):
            return set_id, names


def _index_bytes(tensors: dict, groups: list[dict], names: list[str], metadata: dict, set_id: str, where) -> bytes:
    """The index as Hugging Face writes it (total_size, then weight_map), with netcfg's metadata."""
    weight_map = {tensor: name for name, group in zip(names, groups, strict=True) for tensor in group}
    total = sum(_nbytes(dtype, shape) for dtype, shape in tensors.values())
    index = {"metadata": {"total_size": total, **metadata, shards.KEY_SET: set_id}, "weight_map": weight_map}
    return _utf8(json.dumps(index, indent=2, ensure_ascii=False) + "\n", where)


def _old_set(index: Path) -> list[str]:
    """The shards of the index being replaced that netcfg wrote: the index holds a save id, and each
    shard's name and header hold the same id. Files of any other index are left alone."""
    from netcfg.errors import NetcfgError

    try:
        old = shards.read_index(index)
    except NetcfgError:
        return []  # none, or not one of ours: nothing to remove
    set_id = old.metadata.get(shards.KEY_SET)
    if not set_id or _named_elsewhere(index, set_id):
        return []
    ours = []
    for name in old.shards():
        if f"-{set_id}-" not in name:
            continue
        try:
            header = read_header(index.parent / name)
        except NetcfgError:
            continue
        if header.metadata.get(shards.KEY_SET) == set_id:
            ours.append(name)
    return ours


def _named_elsewhere(index: Path, set_id: str) -> bool:
    """Another index in the folder names the same save (a copy of the index): its shards stay."""
    try:
        others = [n for n in os.listdir(index.parent) if shards.is_index_name(n) and n != index.name]
    except OSError:
        return True
    return any(temporaries.set_of(str(index.parent / n)) == set_id for n in others)


def _remove(folder: str, names: list[str]) -> None:
    for name in names:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(folder, name))
