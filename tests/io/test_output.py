"""The one checked, atomic writer (netcfg.io.output) and the temporary files it may remove
(netcfg.io.temporaries): only those it can prove it made."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time

import pytest
import torch

from netcfg.errors import InputError
from netcfg.io import output, temporaries
from netcfg.io.output import JSON_SCHEMA, SAFETENSORS, check_output, write_file
from netcfg.io.tensor_files import write_tensors

OLD = time.time() - 30 * 86_400
WRITES = "netcfg writes files only"


def old_file(path, data: bytes = b"the user's own") -> None:
    path.write_bytes(data)
    os.utime(path, (OLD, OLD))


def dead_writer(folder, name: str = "model.safetensors") -> str:
    """What a save killed mid-write leaves: its registry entry (unlocked) and its temporary file."""
    token = "ab" * 16
    registry = temporaries.cache_dir() / temporaries.REGISTRY
    registry.mkdir(parents=True, exist_ok=True)
    (registry / f"{temporaries._key(str(folder))}-{token}").touch()
    old_file(folder / f".{name}.netcfg-{token}.tmp", b"partial")
    return f".{name}.netcfg-{token}.tmp"


def test_a_save_removes_a_dead_writers_temporary_file_and_nothing_else(tmp_path):
    users = [
        ".model.safetensors.0123456789abcdef.tmp",  # the pattern netcfg used to delete after 10 minutes
        f".model.safetensors.netcfg-{'cd' * 16}.tmp",  # exactly netcfg's pattern, but no record of it
        ".tmpAbC123",  # what the safetensors library leaves
    ]
    for name in users:
        old_file(tmp_path / name)
    leftover = dead_writer(tmp_path)
    write_tensors({"x": torch.zeros(2)}, tmp_path / "model.safetensors")
    assert not (tmp_path / leftover).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(users + ["model.safetensors"])
    assert all((tmp_path / n).read_bytes() == b"the user's own" for n in users)
    assert not list((temporaries.cache_dir() / temporaries.REGISTRY).glob(temporaries._key(str(tmp_path)) + "-*"))


def test_a_running_writers_temporary_file_is_left_alone(tmp_path):
    leftover = dead_writer(tmp_path)
    entry = temporaries.cache_dir() / temporaries.REGISTRY / f"{temporaries._key(str(tmp_path))}-{'ab' * 16}"
    fd = os.open(entry, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as its writer holds it while writing, however long that takes
    try:
        write_tensors({"x": torch.zeros(2)}, tmp_path / "model.safetensors")
        assert (tmp_path / leftover).exists() and entry.exists()
    finally:
        os.close(fd)
    write_tensors({"x": torch.zeros(2)}, tmp_path / "model.safetensors")  # its writer is gone now
    assert not (tmp_path / leftover).exists() and not entry.exists()


def test_without_a_writable_cache_folder_the_save_still_happens(tmp_path, monkeypatch):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv("NETCFG_CACHE_DIR", str(blocked))
    out = tmp_path / "out"
    out.mkdir()
    write_tensors({"x": torch.ones(2)}, out / "t.safetensors")
    assert [p.name for p in out.iterdir()] == ["t.safetensors"]


def test_a_temporary_name_fits_whatever_the_targets_name(tmp_path):
    for name in ("m" * 250, "é" * 127):  # 250 and 254 bytes
        write_tensors({"x": torch.zeros(1)}, tmp_path / name)
    assert len(os.listdir(tmp_path)) == 2


def test_outputs_that_are_not_regular_files_are_refused_unopened(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/null"):
        with pytest.raises(InputError) as err:
            check_output(path, "-o", SAFETENSORS)
        assert str(err.value) == f"-o {path}: error: not a regular file (a pipe, device or socket): " + WRITES
    with pytest.raises(InputError, match="is a directory"):
        check_output(tmp_path, "-o", SAFETENSORS)
    with pytest.raises(InputError, match="directory '.*/missing' does not exist"):
        check_output(tmp_path / "missing" / "x.safetensors", "-o", SAFETENSORS)


def test_a_full_disk_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "t.safetensors"
    write_tensors({"x": torch.zeros(3)}, path)
    before = path.read_bytes()

    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(output.Writer, "write", full)
    with pytest.raises(InputError) as err:
        write_tensors({"x": torch.ones(3)}, path, flag="--output")
    assert str(err.value) == f"--output {path}: error: cannot write: No space left on device"
    assert path.read_bytes() == before and os.listdir(tmp_path) == [path.name]


def test_a_file_that_becomes_something_else_during_a_write_is_not_replaced(tmp_path):
    path = tmp_path / "t.safetensors"
    target = check_output(path, "-o", SAFETENSORS)  # absent when checked
    with (
        pytest.raises(InputError, match="exists and is not a safetensors file"),
        output.replacing(target, output.Loc(f"-o {path}"), SAFETENSORS) as out,
    ):
        path.write_text("netcfg: 1\n")  # the spec saved there meanwhile
        out.write(b"data")
    assert path.read_text() == "netcfg: 1\n" and os.listdir(tmp_path) == [path.name]


def schema_text() -> bytes:
    from netcfg.actions.catalogue import json_schema

    return (json.dumps(json_schema(), indent=2) + "\n").encode()


def test_a_schema_replaces_only_a_schema_netcfg_wrote_or_an_empty_file(tmp_path):
    path = tmp_path / "netcfg.schema.json"
    write_file(path, schema_text(), "-o", JSON_SCHEMA)
    write_file(path, schema_text(), "-o", JSON_SCHEMA)  # its own earlier output
    (tmp_path / "empty.json").touch()
    write_file(tmp_path / "empty.json", schema_text(), "-o", JSON_SCHEMA)
    for name, data in [
        ("mlp.yaml", b"netcfg: 1\nmodel: {type: relu}\n"),
        ("other.json", b'{"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "another tool"}'),
        ("model.safetensors", b"\x08" + b"\0" * 7 + b"{}      "),
        ("deep.json", b"[" * 100_000),
    ]:
        old_file(tmp_path / name, data)
        with pytest.raises(InputError) as err:
            write_file(tmp_path / name, schema_text(), "-o", JSON_SCHEMA)
        assert str(err.value).startswith(f"-o {tmp_path / name}: error: exists and is not a JSON schema written by "
                                         "netcfg (the spec itself?)")  # fmt: skip
        assert (tmp_path / name).read_bytes() == data


def test_a_schema_written_on_a_full_disk_leaves_the_old_one_whole(tmp_path, monkeypatch):
    path = tmp_path / "netcfg.schema.json"
    write_file(path, schema_text(), "-o", JSON_SCHEMA)
    real = output.Writer.write

    def half_then_full(self, data):
        real(self, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(output.Writer, "write", half_then_full)
    with pytest.raises(InputError, match="cannot write: No space left on device"):
        write_file(path, schema_text().replace(b"netcfg spec", b"netcfg spec!"), "--output", JSON_SCHEMA)
    assert path.read_bytes() == schema_text() and os.listdir(tmp_path) == [path.name]
