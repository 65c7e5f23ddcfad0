"""Reading tensors: in chunks (Linux reads at most ~2 GiB per call), sizes checked against free
memory before anything is allocated, and only the values `netcfg tensors` prints."""

from __future__ import annotations

import json
import os
import struct

import pytest
import torch
from safetensors.torch import save_file

from netcfg.errors import CheckpointError
from netcfg.io import memory, reading
from netcfg.io.reading import load_tensors, peek_tensors, read_one, read_tensors
from netcfg.io.safetensors_header import read_header

GiB = 1 << 30


def tensors_of_every_dtype() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {}
    for name, dtype in reading.TORCH_DTYPES.items():
        raw = torch.randint(0, 256, (3, 37 * 8), dtype=torch.uint8, generator=g)  # any bit pattern
        out[name] = raw.view(dtype)
    out["scalar"] = torch.tensor(2.5)
    out["empty"] = torch.zeros(0, 4)
    return out


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same dtype, shape and bytes (NaN patterns included)."""
    flat = (lambda t: t.reshape(-1).view(torch.uint8)) if a.numel() else (lambda t: t)
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(flat(a), flat(b))


def sparse_file(path, name: str, dtype: str, shape: list[int], nbytes: int) -> None:
    """A valid safetensors file whose one tensor is all zeros, stored as a hole: costs no disk."""
    text = json.dumps({name: {"dtype": dtype, "shape": shape, "data_offsets": [0, nbytes]}}).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.truncate(8 + len(text) + nbytes)


def test_reads_of_many_chunks_are_exact(tmp_path, monkeypatch):
    path = tmp_path / "t.safetensors"
    tensors = tensors_of_every_dtype()
    save_file(tensors, path)
    monkeypatch.setattr(reading, "CHUNK", 7)  # not a multiple of any element size: chunks split elements
    loaded = load_tensors(path)
    assert set(loaded) == set(tensors)
    assert all(same(loaded[k], tensors[k]) for k in tensors)


class ShortReads:
    """A file whose readinto returns at most `limit` bytes, as Linux does past ~2 GiB per call."""

    def __init__(self, f, limit: int):
        self.f, self.limit, self.calls = f, limit, 0

    def seek(self, offset: int) -> None:
        self.f.seek(offset)

    def readinto(self, buffer) -> int:
        self.calls += 1
        return self.f.readinto(buffer[: self.limit])


def test_a_read_that_returns_less_than_asked_is_continued(tmp_path):
    path = tmp_path / "t.safetensors"
    x = torch.randn(1000, generator=torch.Generator().manual_seed(1))
    save_file({"x": x}, path)
    header = read_header(path)
    with open(path, "rb", buffering=0) as f:
        short = ShortReads(f, 1000)
        assert torch.equal(read_one(short, header, header.tensors["x"]), x)
    assert short.calls == 4  # 4000 bytes, 1000 per call: one read() would have stopped at the first


def test_a_file_that_shrinks_while_read_is_an_error_not_a_hang(tmp_path):
    path = tmp_path / "t.safetensors"
    save_file({"x": torch.ones(1000)}, path)
    header = read_header(path)
    with open(path, "r+b") as f:
        f.truncate(header.header_size + 100)
    with pytest.raises(CheckpointError, match="the file changed while it was read"):
        read_tensors(header, torch.device("cpu"))
    with open(path, "rb", buffering=0) as f, pytest.raises(CheckpointError, match="the file ends inside its data"):
        read_one(f, header, header.tensors["x"])


def test_a_180_gb_tensor_is_refused_before_anything_is_allocated(tmp_path, monkeypatch):
    path = tmp_path / "huge.safetensors"
    sparse_file(path, "w", "F32", [150_000, 300_000], 180_000_000_000)
    free = memory.available(torch.device("cpu"))
    if free is None or free >= 180_000_000_000:
        pytest.skip("this machine has 180 GB free")

    def no_allocation(*args, **kwargs):
        raise AssertionError("allocated")

    monkeypatch.setattr(torch, "empty", no_allocation)
    with pytest.raises(CheckpointError) as err:
        read_tensors(read_header(path), torch.device("cpu"))
    message = str(err.value)
    assert message.startswith(f"{path}: error: tensor 'w' F32 [150000, 300000] needs 180,000,000,000 bytes "
                              "(167.6 GiB), more than the ")  # fmt: skip
    assert message.endswith(" free on cpu") and "bytes (" in message.split("more than the ")[1]


def test_many_tensors_that_do_not_fit_together_are_refused_together(tmp_path, monkeypatch):
    path = tmp_path / "t.safetensors"
    save_file({"a": torch.zeros(1000), "b": torch.zeros(1000)}, path)
    monkeypatch.setattr(memory, "_mem_available", lambda: 6000)  # each fits (4000 bytes), both do not
    with pytest.raises(CheckpointError) as err:
        read_tensors(read_header(path), torch.device("cpu"))
    assert str(err.value) == (
        f"{path}: error: its 2 tensors to read need 8,000 bytes (7.8 KiB), more than the 6,000 bytes (5.9 KiB) "
        "free on cpu"
    )
    assert set(read_tensors(read_header(path), torch.device("cpu"), ["a"])) == {"a"}  # one alone fits


def test_peek_reads_only_the_values_shown(tmp_path, monkeypatch):
    path = tmp_path / "big.safetensors"
    sparse_file(path, "w", "F32", [GiB * 10 // 4], GiB * 10)  # 10 GiB of zeros
    reads, real = [], reading._read_exactly

    def counted(f, buffer, *rest):
        reads.append(len(buffer))
        real(f, buffer, *rest)

    monkeypatch.setattr(reading, "_read_exactly", counted)
    kind, peeks = peek_tensors(path)
    assert kind == "dict" and reads == [24]  # six float32 values
    (peek,) = peeks
    assert (peek.name, peek.shape, peek.count) == ("w", (GiB * 10 // 4,), GiB * 10 // 4)
    assert torch.equal(peek.first, torch.zeros(6))


def test_peek_knows_the_structure_save_tensors_recorded(tmp_path):
    from netcfg.io.tensor_files import save_tensors

    for obj, kind, names in [
        (torch.arange(3), "tensor", ["tensor"]),
        ([torch.ones(2)] * 12, "list", [str(i) for i in range(12)]),  # 0..11 in order, not "0", "1", "10", ...
        ({"b": torch.ones(1), "a": torch.zeros(2, dtype=torch.uint16)}, "dict", ["b", "a"]),
    ]:
        save_tensors(obj, tmp_path / "t.safetensors")
        got_kind, peeks = peek_tensors(tmp_path / "t.safetensors")
        assert got_kind == kind and [p.name for p in peeks] == names
    assert peeks[1].first.dtype == torch.uint16 and peeks[1].count == 2


@pytest.mark.skipif(not os.environ.get("NETCFG_LARGE_TESTS"), reason="a real 2.5 GiB tensor: NETCFG_LARGE_TESTS=1")
def test_a_real_tensor_past_2_gib_is_written_and_read_back(tmp_path):
    """What the lowered CHUNK stands for: one read() or write() stops near 2 GiB on Linux."""
    from safetensors.torch import load_file

    from netcfg.io.tensor_files import save_tensors

    x = torch.arange(5 * GiB // 8, dtype=torch.int32) * 3  # 2.5 GiB
    path = tmp_path / "big.safetensors"
    save_tensors({"x": x}, path)
    assert torch.equal(load_tensors(path)["x"], x)
    assert torch.equal(load_file(path)["x"], x)
