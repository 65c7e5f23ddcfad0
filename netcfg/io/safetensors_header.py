"""Reading and checking a safetensors header without reading tensor data. No torch.

The reference parser accepts some files netcfg refuses: duplicate tensor names in the
header (the last one silently wins), so those are checked here first, together with
everything that makes a file unusable, each as one line naming the file and the problem.
Pickles and torch.save zip archives are recognized and refused, never opened.

Layout: 8 bytes little-endian header length N, N bytes of JSON header, then the data;
every tensor's data_offsets are relative to the start of the data, and the tensors
must cover the data exactly (no overlap, no hole, nothing after the last one).
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from math import prod

from netcfg.errors import CheckpointError, Loc
from netcfg.io.files import open_regular

MAX_HEADER = 100 * 1000 * 1000  # the reference implementation's limit
METADATA = "__metadata__"
DTYPE_SIZES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4,
    "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "C64": 8,
}  # fmt: skip
MAX_ELEMENTS = 2**62
MAX_TENSORS = 100_000  # real checkpoints hold thousands; parsing millions of entries takes minutes


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def count(self) -> int:
        return prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass
class Header:
    path: str
    size: int
    header_size: int
    metadata: dict[str, str] = field(default_factory=dict)
    tensors: dict[str, TensorInfo] = field(default_factory=dict)


def fail(path: str | os.PathLike, message: str) -> CheckpointError:
    return CheckpointError(message, Loc(str(path)))


def read_header(path: str | os.PathLike, max_tensors: int = MAX_TENSORS, too_many: str = "") -> Header:
    """The checked header of a safetensors file; CheckpointError names any problem.

    A header listing more than `max_tensors` tensors is refused before it is parsed, with
    `too_many` as the message if given (a shard holding more than its index lists)."""
    try:
        with open_regular(path, CheckpointError, "safetensors file") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(9)
            if not looks_like_safetensors(head):
                _refuse_other_formats(path, head, size)
            f.seek(8)
            (length,) = struct.unpack("<Q", head[:8])
            _check_length(path, length, size)
            raw = f.read(length)
    except OSError as exc:
        raise fail(path, f"cannot read: {exc.strerror or exc}") from None
    header = Header(str(path), size, 8 + length)
    if raw.count(b'"data_offsets"') > max_tensors:  # counted before parsing a huge header
        raise fail(path, too_many or f"header lists more than {max_tensors:,} tensors (corrupt or hostile)")
    _parse(header, raw)
    return header


def looks_like_safetensors(head: bytes) -> bool:
    """The first 9 bytes of a file: a plausible header length followed by '{'. Checked first,
    since a length's first byte can be 0x80, which is also how a pickle starts."""
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") <= MAX_HEADER


def _refuse_other_formats(path, head: bytes, size: int) -> None:
    if size == 0:
        raise fail(path, "empty file: not a safetensors file")
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise fail(path, "a Python pickle (torch.save's legacy format): netcfg never unpickles; use safetensors")
    if head[:4] == b"PK\x03\x04":
        raise fail(path, "a zip archive (torch.save's format, which holds a pickle): netcfg never unpickles; "
                         "use safetensors")  # fmt: skip
    if size < 8:
        raise fail(path, f"truncated: {size} bytes, shorter than the 8-byte header length")
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head[:8]):
        raise fail(path, "a text file, not a safetensors checkpoint (a spec goes to run, build or --config)")


def _check_length(path, length: int, size: int) -> None:
    if length > MAX_HEADER:
        raise fail(path, f"header length {length:,} exceeds the {MAX_HEADER:,}-byte limit (corrupt or not safetensors)")
    if 8 + length > size:
        raise fail(path, f"header length {length:,} runs past the end of the file ({size:,} bytes): truncated?")
    if length < 2:
        raise fail(path, f"header length {length} is too short for a JSON header")


def _parse(header: Header, raw: bytes) -> None:
    path = header.path
    if raw.count(b'"data_offsets"') > MAX_TENSORS:  # counted before parsing a huge header
        raise fail(path, f"header lists more than {MAX_TENSORS:,} tensors (corrupt or hostile)")
    entries = parse_json(path, raw, "header", as_pairs=False)
    entries = _top_level(path, entries) if isinstance(entries, Pairs) else entries
    if not isinstance(entries, dict):
        raise fail(path, "header is not a JSON object")
    header.metadata = _metadata(path, entries.pop(METADATA, {}))
    for name, entry in entries.items():
        header.tensors[name] = _tensor(path, name, entry)
    _check_layout(header)


def parse_json(path, raw: bytes, noun: str, as_pairs: bool = True):
    """JSON text of a safetensors header or index, its objects kept as Pairs (so repeated keys
    can be named); every way it can be broken is one line naming `noun`. Not `as_pairs`: each
    object becomes a dict at once (C speed), and only when one has fewer keys than pairs is the
    text parsed again as Pairs, to name the key."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise fail(path, f"{noun} is not UTF-8 text (corrupt or not safetensors)") from None
    try:
        if as_pairs:
            return json.loads(text, object_pairs_hook=Pairs)
        repeated = []

        def to_dict(pairs: list) -> dict:
            out = dict(pairs)
            if len(out) != len(pairs):
                repeated.append(True)
            return out

        value = json.loads(text, object_pairs_hook=to_dict)
        return json.loads(text, object_pairs_hook=Pairs) if repeated else value
    except RecursionError:
        raise fail(path, f"{noun} nests too deeply to be a safetensors {noun}") from None
    except json.JSONDecodeError as exc:
        raise fail(path, f"{noun} is not valid JSON ({exc.msg} at byte {exc.pos})") from None
    except ValueError as exc:  # an integer of thousands of digits
        raise fail(path, f"{noun} is not valid JSON ({str(exc).split(';')[0]})") from None


class Pairs(list):
    """A JSON object kept as its (key, value) pairs, so repeated keys can be named."""


def _unique(path, pairs: Pairs, what) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise fail(path, what(key))
        out[key] = _unique(path, value, lambda k, key=key: f"tensor '{key}': duplicate key '{k}'") if isinstance(
            value, Pairs) else value  # fmt: skip
    return out


def _top_level(path, entries) -> dict:
    if not isinstance(entries, Pairs):
        raise fail(path, "header is not a JSON object")
    return _unique(path, entries, lambda k: "duplicate key '__metadata__' in the header" if k == METADATA
                   else f"duplicate tensor name '{k}' in the header")  # fmt: skip


def _metadata(path, value) -> dict[str, str]:
    if not isinstance(value, dict):
        raise fail(path, "__metadata__ must map strings to strings")
    for key, item in value.items():
        if not isinstance(item, str):  # the reference reader refuses it too
            shown = json.dumps(item)
            shown = shown if len(shown) <= 40 else shown[:40] + "..."
            raise fail(path, f"__metadata__ must map strings to strings: '{key}' is {shown}")
    return value


def _tensor(path, name: str, entry) -> TensorInfo:
    # Called for each of up to 100,000 entries: C-speed checks (JSON's integers are exactly int,
    # its true and false exactly bool), the message built only for a bad entry.
    if type(entry) is not dict or entry.keys() != _ENTRY_KEYS:
        raise fail(path, f"tensor '{name}': an entry needs exactly dtype, shape and data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    size = DTYPE_SIZES.get(dtype) if type(dtype) is str else None
    if size is None:
        raise fail(path, f"tensor '{name}': unknown dtype {dtype!r}")
    if not _naturals(shape):
        raise fail(path, f"tensor '{name}': shape must be a list of non-negative integers, got {_dims(shape)}")
    if shape and max(shape) > MAX_ELEMENTS:
        raise fail(path, f"tensor '{name}': shape {_dims(shape)} has a dimension over 2**62")
    count = _elements(shape)
    if count > MAX_ELEMENTS:
        raise fail(path, f"tensor '{name}': shape {_dims(shape)} has more than 2**62 elements")
    if not _naturals(offsets) or len(offsets) != 2 or offsets[0] > offsets[1]:
        raise fail(path, f"tensor '{name}': data_offsets must be [start, end] with 0 <= start <= end, got {offsets!r}")
    start, end = offsets
    if count * size != end - start:
        raise fail(path, f"tensor '{name}': {dtype} {_dims(shape)} needs {count * size:,} bytes, "
                         f"its offsets give {end - start:,}")  # fmt: skip
    return TensorInfo(name, dtype, tuple(shape), start, end)


_ENTRY_KEYS = {"dtype", "shape", "data_offsets"}
_INT = {int}


def _elements(shape: list[int]) -> int:
    """The product of the dimensions, or a number past MAX_ELEMENTS: multiplied only while it
    stays below (a product of 100,000 dimensions of 2**62 takes minutes to compute whole)."""
    if 0 in shape:
        return 0
    count = 1
    for d in shape:
        count *= d
        if count > MAX_ELEMENTS:
            break
    return count


def _dims(shape) -> str:
    """A shape (or what a header gives instead) for a message: a long one as its first
    dimensions and its length, so that what is wrong with it stays on the line."""
    if not isinstance(shape, list) or len(shape) <= 8:
        return repr(shape)
    return f"[{', '.join(repr(d) for d in shape[:4])}, ... ({len(shape):,} dimensions)]"


def _naturals(value) -> bool:
    """A JSON list of non-negative integers (booleans are not integers here)."""
    return type(value) is list and set(map(type, value)) <= _INT and (not value or min(value) >= 0)


def _check_layout(header: Header) -> None:
    data = header.size - header.header_size
    position = 0
    for info in sorted(header.tensors.values(), key=lambda t: (t.start, t.end)):
        if info.start < position:
            raise fail(header.path, f"tensor '{info.name}' overlaps the tensor before it (offset {info.start:,})")
        if info.start > position:
            raise fail(header.path, f"a hole of {info.start - position:,} bytes before tensor '{info.name}'")
        position = info.end
    if position > data:
        raise fail(header.path, f"tensors need {position:,} data bytes but the file has {data:,}: truncated?")
    if position < data:
        raise fail(header.path, f"{data - position:,} bytes after the last tensor (corrupt or not safetensors)")
