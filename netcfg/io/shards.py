"""Checkpoints in one safetensors file or sharded: an index and its shards. No torch.

A sharded checkpoint is Hugging Face's layout: `NAME.safetensors.index.json`, a JSON object
`{"metadata": {...}, "weight_map": {tensor name: shard file name}}`, beside the shards, each a
safetensors file. `read_checkpoint` opens either kind and checks everything before a tensor is
read: the index with the caps of a safetensors header (its size, its nesting, its number of
values, counted before it is parsed, and no repeated key), every shard's header (netcfg's checked
reader: a pickle is refused unopened), and that index and shards agree (each tensor the index
lists is in the shard it names, and nowhere else; each tensor of a shard is listed). Each problem
is one line naming the index, the shard and a tensor.

Shard names are plain file names in the index's folder: an index cannot make netcfg open
`../secret` or `/dev/zero` (a shard may be a symbolic link, as in Hugging Face's cache).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from netcfg.errors import CheckpointError, Diagnostic, Loc
from netcfg.io.files import open_regular
from netcfg.io.safetensors_header import (
    MAX_HEADER,
    MAX_TENSORS,
    Header,
    Pairs,
    TensorInfo,
    fail,
    looks_like_safetensors,
    parse_json,
    read_header,
)

MAX_INDEX = MAX_HEADER
"""Bytes of an index: the limit of a safetensors header (DeepSeek-V3's 91,000-tensor index is 9 MB)."""
MAX_INDEX_VALUES = 2_000_000
"""JSON values of an index, counted from its separators before it is parsed (parsing 8 million
takes 20 s and 1.6 GB): 100,000 tensors and an embedded spec are well under it."""
MAX_SHARDS = 10_000
"""Shard files of one index (Llama 3.1 405B has 191)."""
KEY_SET = "netcfg.shard_set"
"""Metadata of a sharded save by netcfg, in the index and each shard: the save's random id."""
MAX_LISTED = 20


@dataclass
class Checkpoint:
    """A checkpoint's tensors and metadata, from its headers: one file, or an index and its shards."""

    path: str
    """The file or the index the user named."""
    metadata: dict[str, str]
    """The file's metadata, or the index's (values that are not strings as JSON text)."""
    tensors: dict[str, TensorInfo]
    """Every tensor: offsets are within the file holding it (header_of)."""
    files: list[Header]
    """The safetensors files: the one file, or the shards in the index's order."""
    file_of: dict[str, Header] = field(default_factory=dict)
    """Tensor name -> the header of the file holding it."""
    index_size: int = 0
    """Bytes of the index (0: a single file)."""

    @property
    def sharded(self) -> bool:
        return self.index_size > 0

    @property
    def size(self) -> int:
        """Bytes on disk: the index and every file."""
        return self.index_size + sum(h.size for h in self.files)

    @property
    def header_size(self) -> int:
        return self.index_size + sum(h.header_size for h in self.files)

    def header_of(self, name: str) -> Header:
        return self.file_of[name]


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """A safetensors file or a sharded checkpoint's index, checked (see the module's docstring)."""
    if not _is_json(path):
        return single(read_header(path))
    return _read_sharded(path)


def single(header: Header) -> Checkpoint:
    """A one-file checkpoint of a header already read."""
    return Checkpoint(header.path, header.metadata, header.tensors, [header], dict.fromkeys(header.tensors, header))


def file_order(checkpoint: Header | Checkpoint) -> list[str]:
    """Tensor names as the files store them: by file (an index's order of shards), then by offset."""
    if isinstance(checkpoint, Header):
        checkpoint = single(checkpoint)
    return [n for h in checkpoint.files for n in sorted(h.tensors, key=lambda n: h.tensors[n].start)]


def is_index_name(path: str | os.PathLike) -> bool:
    return str(path).endswith(".index.json")


def _is_json(path) -> bool:
    """An index starts with '{' (after white space); a safetensors file with its 8-byte length.
    Anything else goes to the safetensors reader, which says what it is (a pickle, a spec...)."""
    with open_regular(path, CheckpointError, "safetensors file") as f:
        head = f.read(64)
    text = b"\0" not in head[:8]  # a safetensors length below 2**32 has zero bytes; JSON text has none
    return text and not looks_like_safetensors(head[:9]) and head.lstrip(b" \t\r\n")[:1] == b"{"


# ---------------------------------------------------------------- the index


@dataclass
class Index:
    path: str
    size: int
    metadata: dict[str, str]
    weight_map: dict[str, str]
    """Tensor name -> shard file name, in the index's order."""

    def folder(self) -> str:
        return os.path.dirname(self.path)

    def shards(self) -> dict[str, list[str]]:
        """Shard file name -> the tensors the index puts there, shards in order of first mention."""
        out: dict[str, list[str]] = {}
        for name, shard in self.weight_map.items():
            out.setdefault(shard, []).append(name)
        return out


def read_index(path: str | os.PathLike) -> Index:
    """The checked index (its shards are not opened)."""
    try:
        with open_regular(path, CheckpointError, "safetensors index") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_INDEX:
                raise fail(path, f"index is {size:,} bytes, past the {MAX_INDEX:,}-byte limit (corrupt or hostile)")
            raw = f.read(MAX_INDEX + 1)
    except OSError as exc:
        raise fail(path, f"cannot read: {exc.strerror or exc}") from None
    # Every JSON value but the first follows a ':', a ',' or a '[': an upper bound, before parsing.
    if raw.count(b":") + raw.count(b",") + raw.count(b"[") > MAX_INDEX_VALUES:
        raise fail(path, f"index holds more than {MAX_INDEX_VALUES:,} JSON values (corrupt or hostile)")
    top = parse_json(path, raw, "index")
    if not isinstance(top, Pairs):
        raise fail(path, "index is not a JSON object")
    top = _plain(path, top, "the index")
    if not isinstance(top.get("weight_map"), dict):
        raise fail(path, "a JSON file without a 'weight_map' object: not a safetensors index "
                         "(a spec goes to run, build or --config)")  # fmt: skip
    metadata = top.get("metadata", {})
    if not isinstance(metadata, dict):
        raise fail(path, "the index's 'metadata' is not a JSON object")
    weight_map = top["weight_map"]
    if len(weight_map) > MAX_TENSORS:
        raise fail(path, f"index lists more than {MAX_TENSORS:,} tensors (corrupt or hostile)")
    index = Index(str(path), size, {k: _text(v) for k, v in metadata.items()}, weight_map)
    _check_shard_names(index)
    return index


def _plain(path, value, where: str):
    """Pairs -> dict, recursively, refusing a repeated key (JSON would silently keep the last)."""
    if isinstance(value, list) and not isinstance(value, Pairs):
        return [_plain(path, v, where) for v in value]
    if not isinstance(value, Pairs):
        return value
    out = {}
    for key, item in value:
        if key in out:
            what = "tensor name" if where == "the index's weight_map" else "key"
            raise fail(path, f"duplicate {what} '{key}' in {where}")
        inner = f"the index's {key}" if where == "the index" and key in ("weight_map", "metadata") else where
        out[key] = _plain(path, item, inner)
    return out


def _text(value) -> str:
    """A metadata value as a string: Hugging Face's total_size is a number."""
    return value if isinstance(value, str) else json.dumps(value)


def _check_shard_names(index: Index) -> None:
    problems = []
    for name, shard in index.weight_map.items():
        if not isinstance(shard, str):
            problems.append(f"tensor '{name}': its shard must be a file name, got {json.dumps(shard)[:80]}")
        elif not plain_file_name(shard):
            problems.append(f"tensor '{name}': shard '{shard}' is not a file name in the index's folder")
    _raise(index.path, problems, "tensors with a bad shard name")
    if len(set(index.weight_map.values())) > MAX_SHARDS:
        raise fail(index.path, f"index names more than {MAX_SHARDS:,} shard files (corrupt or hostile)")


def plain_file_name(name: str) -> bool:
    """A name of a file in the index's own folder: no folder part, not '.' or '..', no NUL."""
    return (
        0 < len(os.fsencode(name)) <= 255 and "/" not in name and "\0" not in name and name not in (".", "..")
        and not (os.sep != "/" and os.sep in name)
    )  # fmt: skip


def _raise(path, problems: list[str], kind: str) -> None:
    if not problems:
        return
    listed = problems[:MAX_LISTED]
    if len(problems) > MAX_LISTED:
        listed.append(f"... and {len(problems) - MAX_LISTED:,} more {kind}")
    raise CheckpointError([Diagnostic(Loc(str(path)), p) for p in listed])


# ---------------------------------------------------------------- index and shards together


def _read_sharded(path) -> Checkpoint:
    index = read_index(path)
    shards = index.shards()
    headers = {shard: _shard_header(index, shard, names) for shard, names in shards.items()}
    _check_agreement(index, headers)
    file_of = {name: headers[shard] for name, shard in index.weight_map.items()}
    tensors = {name: headers[shard].tensors[name] for name, shard in index.weight_map.items()}
    return Checkpoint(str(path), index.metadata, tensors, list(headers.values()), file_of, index.size)


def _shard_header(index: Index, shard: str, names: list[str]) -> Header:
    """A shard's checked header; its problem said at the index, naming the shard and a tensor in it."""
    more = f" and {len(names) - 1:,} more" if len(names) > 1 else ""
    # A few more than listed, so that the agreement check can name them; not thousands.
    most = len(names) + MAX_LISTED
    try:
        return read_header(os.path.join(index.folder(), shard), most,
                           f"holds more than {most:,} tensors; the index lists {len(names):,} for it")  # fmt: skip
    except CheckpointError as exc:
        message = exc.diagnostics[0].message
        raise fail(index.path, f"shard '{shard}' (tensor '{names[0]}'{more}): {message}") from None


def _check_agreement(index: Index, headers: dict[str, Header]) -> None:
    problems = []
    our_set = index.metadata.get(KEY_SET)
    for shard, header in headers.items():
        if our_set is not None and header.metadata.get(KEY_SET) != our_set:
            problems.append(f"shard '{shard}' is not from the save that wrote the index (its {KEY_SET} is "
                            f"{header.metadata.get(KEY_SET)!r}, the index's {our_set!r})")  # fmt: skip
        for name in header.tensors:
            listed = index.weight_map.get(name)
            if listed is None:
                problems.append(f"shard '{shard}' holds tensor '{name}', which the index does not list")
            elif listed != shard:
                problems.append(f"shard '{shard}' holds tensor '{name}', which the index puts in shard '{listed}'")
    for name, shard in index.weight_map.items():
        if name not in headers[shard].tensors:
            problems.append(f"tensor '{name}': the index puts it in shard '{shard}', which does not hold it")
    _raise(index.path, problems, "disagreements between the index and its shards")
