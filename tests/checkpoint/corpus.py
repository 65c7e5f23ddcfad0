"""A corpus of bad checkpoint files, made at test time from one small valid checkpoint.

`build(directory)` saves configs/mlp.yaml with netcfg (32 KB), then writes each bad file
next to it. Every file is derived from that one valid file by editing its bytes or its
header, so a case tests one defect. `Facts` holds the numbers of the valid file (its
header length depends on the netcfg and torch version strings in the metadata), for the
expected messages that quote them.

Safetensors layout: 8 bytes little-endian header length N, N bytes of JSON, the data.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from tests.conftest import CONFIGS

HARMLESS = {"weights": [1.0, 2.0, 3.0], "name": "not a checkpoint"}
"""What the pickle case holds: plain data, no class that runs anything when unpickled."""


@dataclass(frozen=True)
class Facts:
    """The valid checkpoint the corpus is derived from."""

    path: Path
    header_len: int
    """N, the JSON header's length in bytes."""
    data: int
    """Bytes of tensor data (7,946 float32 values: 31,784)."""
    tensors: dict
    """The header's tensor entries, in file order."""

    @property
    def size(self) -> int:
        return 8 + self.header_len + self.data


@dataclass
class Parts:
    header: dict
    """The parsed JSON header (tensor entries and __metadata__)."""
    raw_header: bytes
    data: bytes
    raw: bytes


def valid_checkpoint(directory: Path) -> Path:
    from netcfg.actions import checkpoint as ck
    from netcfg.building.builder import build_spec
    from netcfg.spec.loader import load_spec

    path = directory / "valid.safetensors"
    ck.save(build_spec(load_spec(CONFIGS / "mlp.yaml"), device="cpu", seed=0), path, durable=False)
    return path


def split(raw: bytes) -> Parts:
    (n,) = struct.unpack("<Q", raw[:8])
    raw_header = raw[8 : 8 + n]
    return Parts(json.loads(raw_header), raw_header, raw[8 + n :], raw)


def assemble(header: dict | bytes | str, data: bytes) -> bytes:
    if isinstance(header, dict):
        header = json.dumps(header, separators=(",", ":"))
    if isinstance(header, str):
        header = header.encode()
    return struct.pack("<Q", len(header)) + header + data


def edit_tensor(p: Parts, name: str, **changes) -> bytes:
    header = json.loads(p.raw_header)
    header[name].update(changes)
    return assemble(header, p.data)


def with_spec(p: Parts, edit: Callable[[dict], None]) -> bytes:
    """The checkpoint with its embedded spec edited and its sha256 recomputed (a consistent file)."""
    header = json.loads(p.raw_header)
    meta = header["__metadata__"]
    spec = json.loads(meta["netcfg.spec"])
    edit(spec)
    text = json.dumps(spec, separators=(",", ":"))
    meta["netcfg.spec"] = text
    meta["netcfg.spec_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    return assemble(header, p.data)


def with_spec_text(p: Parts, text: str) -> bytes:
    """The checkpoint with `text` as its embedded spec, with a matching sha256."""
    return with_metadata(p, **{"netcfg.spec": text, "netcfg.spec_sha256": hashlib.sha256(text.encode()).hexdigest()})


def with_metadata(p: Parts, **changes) -> bytes:
    header = json.loads(p.raw_header)
    header["__metadata__"].update(changes)
    return assemble(header, p.data)


def _shifted(p: Parts, delta: int, first: str) -> dict:
    """The header with every tensor from `first` on moved by `delta` bytes."""
    header = json.loads(p.raw_header)
    names = [n for n in header if n != "__metadata__"]
    for name in names[names.index(first) :]:
        start, end = header[name]["data_offsets"]
        header[name]["data_offsets"] = [start + delta, end + delta]
    return header


def lookalike(p: Parts, length: int = 0x380) -> bytes:
    """The valid file with its header padded to `length` bytes: 0x380 starts the file with 80 03,
    the first two bytes of a protocol-3 pickle."""
    header = json.loads(p.raw_header)
    text = json.dumps(header, separators=(",", ":"))
    header["__metadata__"]["pad"] = " " * (length - len(text) - len(',"pad":""'))
    raw = assemble(header, p.data)
    assert struct.unpack("<Q", raw[:8])[0] == length
    return raw


def _duplicate_name(p: Parts) -> bytes:
    # json.dumps cannot write a duplicate key: splice the text. "0.bias" appears a second
    # time, after "0.weight", with the entry of "2.bias" (a same-sized, valid entry).
    text = p.raw_header.decode()
    entry = json.dumps(p.header["2.bias"], separators=(",", ":"))
    text = text.replace('"0.weight":', f'"0.bias":{entry},"0.weight":', 1)
    return assemble(text, p.data)


def _duplicate_inner_key(p: Parts) -> bytes:
    text = p.raw_header.decode()
    entry = json.dumps(p.header["0.bias"], separators=(",", ":"))
    assert entry.startswith('{"dtype":"F32",')
    text = text.replace(f'"0.bias":{entry}', '"0.bias":{"dtype":"F32",' + entry[1:], 1)
    return assemble(text, p.data)


def _duplicate_metadata(p: Parts) -> bytes:
    text = p.raw_header.decode()
    assert text.startswith('{"__metadata__":')
    return assemble('{"__metadata__":{},' + text[1:], p.data)


def _many_tensors(p: Parts) -> bytes:
    from netcfg.io.safetensors_header import MAX_TENSORS

    header = {f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(MAX_TENSORS + 1)}
    return assemble(header, b"")


def _nest_model(spec: dict) -> None:
    node = spec["model"]
    for _ in range(200):
        node = {"type": "sequential", "layers": [node]}
    spec["model"] = node


def _duplicate_spec_key(p: Parts) -> bytes:
    """The embedded spec's JSON with 'out_features' given twice in its first layer (JSON keeps the last)."""
    text = p.header["__metadata__"]["netcfg.spec"]
    assert '"out_features":256' in text
    return with_spec_text(p, text.replace('"out_features":256', '"out_features":256,"out_features":512', 1))


def _repeat_bomb(spec: dict) -> None:
    """4 KB of JSON: 5,000 copies of a body holding 2,000 values (10 million values once expanded)."""
    spec["model"] = {"type": "repeat", "times": 5000, "body": {"type": "identity", "junk": [1] * 2000}}


def _interpolation_bomb(spec: dict) -> None:
    """1.5 KB of JSON: 1,000 names of 100 pieces of 9,999 characters (1 GB once expanded)."""
    spec["model"] = {"type": "repeat", "times": 1000, "body": {"type": "identity", "name": "${'a' * 9999}" * 100}}


def _escape_name(p: Parts) -> bytes:
    """The tensor 0.bias renamed with a newline and a terminal escape in it (an unexpected tensor)."""
    text = p.raw_header.decode().replace('"0.bias":', '"0.bias\\n\\u001b[31mred":', 1)
    return assemble(text, p.data)


def _torch_zip(p: Parts) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save({"weight": torch.arange(6.0).reshape(2, 3)}, buffer)
    return buffer.getvalue()


# name -> (file name, bytes from the valid file's parts). Directory and missing file are special.
CASES: dict[str, tuple[str, Callable[[Parts], bytes] | None]] = {
    "truncated_in_length": ("truncated_in_length.safetensors", lambda p: p.raw[:5]),
    "truncated_in_header": ("truncated_in_header.safetensors", lambda p: p.raw[:400]),
    "truncated_in_data": ("truncated_in_data.safetensors", lambda p: p.raw[: 8 + len(p.raw_header) + 1000]),
    "truncated_last_byte": ("truncated_last_byte.safetensors", lambda p: p.raw[:-1]),
    "truncated_lookalike": ("truncated_lookalike.safetensors", lambda p: lookalike(p)[:500]),
    "header_past_end": ("header_past_end.safetensors", lambda p: struct.pack("<Q", 1_000_000) + p.raw[8:]),
    "header_over_cap": ("header_over_cap.safetensors", lambda p: struct.pack("<Q", 2**40) + p.raw[8:]),
    "header_too_short": ("header_too_short.safetensors", lambda p: assemble(b"{", p.data)),
    "header_not_utf8": ("header_not_utf8.safetensors", lambda p: assemble(b'{"\xff\xfe":1}', p.data)),
    "header_not_json": ("header_not_json.safetensors", lambda p: assemble(b"{not json at all}", p.data)),
    "header_not_object": ("header_not_object.safetensors", lambda p: assemble(b"[1, 2, 3]", p.data)),
    "header_deeply_nested": (
        "header_deeply_nested.safetensors",
        lambda p: assemble(b'{"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}", p.data),
    ),
    "overlap": ("overlap.safetensors", lambda p: assemble(_shifted(p, -4, "2.bias"), p.data)),
    "hole": ("hole.safetensors", lambda p: assemble(_shifted(p, 8, "2.bias"), p.data + bytes(8))),
    "extra_bytes": ("extra_bytes.safetensors", lambda p: p.raw + b"\0" * 16),
    "unknown_dtype": ("unknown_dtype.safetensors", lambda p: edit_tensor(p, "0.bias", dtype="F33")),
    "dtype_not_string": ("dtype_not_string.safetensors", lambda p: edit_tensor(p, "0.bias", dtype=["F32"])),
    "size_mismatch": ("size_mismatch.safetensors", lambda p: edit_tensor(p, "0.weight", shape=[256, 21])),
    "shape_overflow": ("shape_overflow.safetensors", lambda p: edit_tensor(p, "0.bias", shape=[2**31, 2**31, 2**31])),
    "negative_dim": ("negative_dim.safetensors", lambda p: edit_tensor(p, "0.bias", shape=[-256])),
    "bad_offsets": ("bad_offsets.safetensors", lambda p: edit_tensor(p, "0.bias", data_offsets=[1024, 0])),
    "entry_missing_key": (
        "entry_missing_key.safetensors",
        lambda p: assemble(p.raw_header.decode().replace('"dtype":"F32",', "", 1), p.data),
    ),
    "duplicate_name": ("duplicate_name.safetensors", _duplicate_name),
    "duplicate_inner_key": ("duplicate_inner_key.safetensors", _duplicate_inner_key),
    "duplicate_metadata": ("duplicate_metadata.safetensors", _duplicate_metadata),
    "metadata_not_str_map": (
        "metadata_not_str_map.safetensors",
        lambda p: assemble({**p.header, "__metadata__": {"netcfg.seed": 0}}, p.data),
    ),
    "metadata_not_object": (
        "metadata_not_object.safetensors",
        lambda p: assemble({**p.header, "__metadata__": ["a", "b"]}, p.data),
    ),
    "spec_edited": (
        "spec_edited.safetensors",
        lambda p: with_metadata(p, **{"netcfg.spec": p.header["__metadata__"]["netcfg.spec"].replace("256", "257")}),
    ),
    "spec_not_json": ("spec_not_json.safetensors", lambda p: with_metadata(p, **{"netcfg.spec": "{not json"})),
    "spec_not_object": ("spec_not_object.safetensors", lambda p: with_spec_text(p, "[1, 2]")),
    "ties_not_names": ("ties_not_names.safetensors", lambda p: with_metadata(p, **{"netcfg.ties": "[[1, 2]]"})),
    "format_empty": ("format_empty.safetensors", lambda p: with_metadata(p, **{"netcfg.checkpoint_format": ""})),
    "ties_not_json": ("ties_not_json.safetensors", lambda p: with_metadata(p, **{"netcfg.ties": "[not json"})),
    "format_2": ("format_2.safetensors", lambda p: with_metadata(p, **{"netcfg.checkpoint_format": "2"})),
    "spec_netcfg_2": ("spec_netcfg_2.safetensors", lambda p: with_spec(p, lambda s: s.update(netcfg=2))),
    "pickle": ("pickle.pt", lambda p: pickle.dumps(HARMLESS)),
    "pickle_named_safetensors": ("pickle.safetensors", lambda p: pickle.dumps(HARMLESS)),
    "pickle_protocol_0": ("pickle_protocol_0.safetensors", lambda p: pickle.dumps(HARMLESS, protocol=0)),
    "torch_zip": ("model.pt", _torch_zip),
    "torch_zip_named_safetensors": ("model_zip.safetensors", _torch_zip),
    "empty": ("empty.safetensors", lambda p: b""),
    "random_bytes": ("random.safetensors", lambda p: random.Random(1234).randbytes(4096)),
    "directory": ("directory.safetensors", None),
    "missing": ("missing.safetensors", None),
    "fifo": ("fifo.safetensors", None),
    # Found by a red-team pass over the reader (session 2).
    "shape_5000_digits": (
        "shape_5000_digits.safetensors",
        lambda p: assemble(p.raw_header.decode().replace('"shape":[256]', '"shape":[' + "9" * 5000 + "]", 1), p.data),
    ),
    "zero_times_huge_dim": ("zero_times_huge_dim.safetensors", lambda p: edit_tensor(p, "0.bias", shape=[0, 2**70])),
    "too_many_tensors": ("too_many_tensors.safetensors", _many_tensors),
    "spec_deeply_nested": (
        "spec_deeply_nested.safetensors",
        lambda p: with_spec_text(p, '{"a":' + "[" * 100_000 + "]" * 100_000 + "}"),
    ),
    "spec_nested_200": ("spec_nested_200.safetensors", lambda p: with_spec(p, _nest_model)),
    "format_superscript": (
        "format_superscript.safetensors",
        lambda p: with_metadata(p, **{"netcfg.checkpoint_format": "\u00b2"}),
    ),
    "spec_seed_2p70": ("spec_seed_2p70.safetensors", lambda p: with_spec(p, lambda s: s.update(seed=2**70))),
    "name_with_escapes": ("name_with_escapes.safetensors", _escape_name),
    "tie_stored_twice_differing": ("tie_stored_twice_differing.safetensors", None),
    # An embedded spec gets the budgets of a spec file (issue 11).
    "spec_duplicate_key": ("spec_duplicate_key.safetensors", _duplicate_spec_key),
    "spec_repeat_bomb": ("spec_repeat_bomb.safetensors", lambda p: with_spec(p, _repeat_bomb)),
    "spec_interpolation_bomb": ("spec_interpolation_bomb.safetensors", lambda p: with_spec(p, _interpolation_bomb)),
    "spec_many_values": ("spec_many_values.safetensors", lambda p: with_spec(p, lambda s: s.update(x=[0] * 200_001))),
    # Sharded checkpoints (issue 13): each an index beside the valid shards (INDEX_CASES).
    **{
        name: (name.removeprefix("index_") + ".index.json", None)
        for name in [
            "index_missing_shard",
            "index_unlisted_tensor",
            "index_wrong_shard",
            "index_shard_pickle",
            "index_shard_zip",
            "index_shard_truncated",
            "index_shard_other_save",
            "index_shard_is_a_folder",
            "index_parent_folder",
            "index_absolute_path",
            "index_nul_in_name",
            "index_shard_not_text",
            "index_not_json",
            "index_nests_deeply",
            "index_duplicate_tensor",
            "index_duplicate_weight_map",
            "index_duplicate_metadata_key",
            "index_without_weight_map",
            "index_metadata_not_object",
            "index_too_large",
            "index_many_values",
            "index_too_many_tensors",
            "index_too_many_shards",
            "index_empty",
        ]
    },
}


# ---------------------------------------------------------------- sharded checkpoints (index files)

SET_ID = "0c0ffee0c0de"
"""The save id of the corpus's sharded checkpoint (netcfg.io.shards.KEY_SET), fixed so messages quoting it are."""
SHARDS = {"shard-1.safetensors": ["0.weight"], "shard-2.safetensors": ["0.bias", "2.weight", "2.bias"]}


def write_shards(directory: Path, valid: Path) -> dict:
    """The valid checkpoint's tensors as two shards beside an index, as netcfg writes them (with a
    fixed save id); returns the valid index as data."""
    from netcfg.io.reading import load_tensors
    from netcfg.io.safetensors_header import read_header
    from netcfg.io.shards import KEY_SET
    from netcfg.io.tensor_files import write_tensors

    tensors = load_tensors(valid)
    for name, names in SHARDS.items():
        write_tensors({n: tensors[n] for n in names}, directory / name, {"format": "pt", KEY_SET: SET_ID})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    metadata = {"total_size": total, **read_header(valid).metadata, KEY_SET: SET_ID}
    index = {"metadata": metadata, "weight_map": {n: shard for shard, names in SHARDS.items() for n in names}}
    (directory / "sharded.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return index


def _index(index: dict, **weight_map) -> str:
    return json.dumps({**index, "weight_map": {**index["weight_map"], **weight_map}})


def _index_without(index: dict, name: str) -> str:
    return json.dumps({**index, "weight_map": {k: v for k, v in index["weight_map"].items() if k != name}})


def _splice(index: dict, before: str, after: str) -> str:
    """The index's JSON text with one piece replaced (repeated keys, which json.dumps cannot write)."""
    text = json.dumps(index)
    assert before in text
    return text.replace(before, after, 1)


def _shard_copy(directory: Path, name: str, raw: bytes, index: dict) -> str:
    """An index whose tensors of shard-2 point at a new shard file holding `raw`."""
    (directory / name).write_bytes(raw)
    return _index(index, **dict.fromkeys(SHARDS["shard-2.safetensors"], name))


def _other_save(directory: Path, index: dict) -> str:
    from netcfg.io.shards import KEY_SET

    parts = split((directory / "shard-2.safetensors").read_bytes())
    header = json.loads(parts.raw_header)
    header["__metadata__"][KEY_SET] = "123456789abc"
    return _shard_copy(directory, "other-save.safetensors", assemble(header, parts.data), index)


def _sparse_index(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        f.write(b'{"weight_map": {}, "pad": "')
        f.truncate(size)


# name -> the index's text, given the folder (with the valid shards) and the valid index.
INDEX_CASES: dict[str, Callable[[Path, dict], str | None]] = {
    "index_missing_shard": lambda d, i: _index(i, **{"2.bias": "missing.safetensors"}),
    "index_unlisted_tensor": lambda d, i: _index_without(i, "2.bias"),
    "index_wrong_shard": lambda d, i: _index(i, **{"2.bias": "shard-1.safetensors"}),
    "index_shard_pickle": lambda d, i: _shard_copy(d, "pickle-shard.safetensors", pickle.dumps(HARMLESS), i),
    "index_shard_zip": lambda d, i: _shard_copy(d, "zip-shard.safetensors", _torch_zip(None), i),
    "index_shard_truncated": lambda d, i: _shard_copy(
        d, "truncated-shard.safetensors", (d / "shard-2.safetensors").read_bytes()[:-4], i
    ),
    "index_shard_other_save": _other_save,
    "index_shard_is_a_folder": lambda d, i: (
        (d / "folder.safetensors").mkdir() or _index(i, **{"2.bias": "folder.safetensors"})
    ),
    "index_parent_folder": lambda d, i: _index(i, **{"2.bias": "../valid.safetensors"}),
    "index_absolute_path": lambda d, i: _index(i, **{"2.bias": "/etc/passwd"}),
    "index_nul_in_name": lambda d, i: _index(i, **{"2.bias": "shard\u0000.safetensors"}),
    "index_shard_not_text": lambda d, i: _splice(i, '"2.bias": "shard-2.safetensors"', '"2.bias": 7'),
    "index_not_json": lambda d, i: '{"weight_map": {"0.bias": }',
    "index_nests_deeply": lambda d, i: '{"metadata": {"x": ' + "[" * 100_000 + "]" * 100_000 + '}, "weight_map": {}}',
    "index_duplicate_tensor": lambda d, i: _splice(
        i, '"0.bias": "shard-2.safetensors"', '"0.bias": "shard-2.safetensors", "0.bias": "shard-1.safetensors"'
    ),
    "index_duplicate_weight_map": lambda d, i: _splice(i, '{"metadata"', '{"weight_map": {}, "metadata"'),
    "index_duplicate_metadata_key": lambda d, i: _splice(i, '"format": "pt"', '"format": "pt", "format": "np"'),
    "index_without_weight_map": lambda d, i: json.dumps({"metadata": i["metadata"]}),
    "index_metadata_not_object": lambda d, i: json.dumps({**i, "metadata": ["a"]}),
    "index_too_large": lambda d, i: _sparse_index(d / "too_large.index.json", 100_000_001),
    "index_many_values": lambda d, i: '{"metadata": {"x": "' + "," * 2_000_001 + '"}, "weight_map": {}}',
    "index_too_many_tensors": lambda d, i: json.dumps({"weight_map": {f"t{n}": "s" for n in range(100_001)}}),
    "index_too_many_shards": lambda d, i: json.dumps({"weight_map": {f"t{n}": f"s{n}" for n in range(10_001)}}),
    "index_empty": lambda d, i: "",
}


def tie_stored_twice(directory: Path) -> Path:
    """A tied model (configs/chapter/tied_params.yaml) whose file holds the tied tensor under both
    paths, with different values."""
    from safetensors.torch import save_file

    from netcfg.actions import checkpoint as ck
    from netcfg.building.builder import build_spec
    from netcfg.io.safetensors_header import read_header
    from netcfg.spec.loader import load_spec

    built = build_spec(load_spec(CONFIGS / "chapter" / "tied_params.yaml"), device="cpu", seed=0)
    valid = directory / "tied_valid.safetensors"
    ck.save(built, valid, durable=False)
    (group,) = [g for g in ck.alias_groups(built.model) if len(g) > 1]
    state = built.model.state_dict()
    tensors = {name: state[name].clone() for name in read_header(valid).tensors}
    tensors[group[1]] = state[group[0]].clone() + 1
    path = directory / "tie_stored_twice_differing.safetensors"
    save_file(tensors, path, metadata=read_header(valid).metadata)
    return path


def build(directory: Path) -> tuple[dict[str, Path], Facts]:
    """Write every case under `directory`; return name -> path, and the valid file's facts."""
    directory.mkdir(parents=True, exist_ok=True)
    valid = valid_checkpoint(directory)
    parts = split(valid.read_bytes())
    facts = Facts(
        valid,
        len(parts.raw_header),
        len(parts.data),
        {k: v for k, v in parts.header.items() if k != "__metadata__"},
    )
    index = write_shards(directory, valid)
    paths = {}
    for name, (file_name, make) in CASES.items():
        path = directory / file_name
        if name in INDEX_CASES:
            text = INDEX_CASES[name](directory, index)
            if text is not None:
                path.write_text(text)
        elif name == "directory":
            path.mkdir()
        elif name == "fifo":
            os.mkfifo(path)  # a read would block forever: it must be refused unopened
        elif name == "tie_stored_twice_differing":
            tie_stored_twice(directory)
        elif make is not None:
            path.write_bytes(make(parts))
        paths[name] = path
    return paths, facts
