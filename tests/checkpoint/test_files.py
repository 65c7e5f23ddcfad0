"""Files that are not what they seem, on the way in (specs, checkpoints, --input) and out (save)."""

from __future__ import annotations

import os
import signal
import stat

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from netcfg.actions import checkpoint as ck
from netcfg.cli.app import app
from netcfg.io.reading import load_tensors
from netcfg.io.safetensors_header import read_header
from netcfg.io.tensor_files import save_tensors
from tests.conftest import CONFIGS

MLP = str(CONFIGS / "mlp.yaml")


@pytest.fixture
def no_hang():
    """A regression that blocks on a pipe fails the test instead of hanging the suite."""

    def fail(*_):
        raise TimeoutError("blocked (on a pipe?)")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_pipe_is_refused_unopened_as_a_spec_an_input_and_an_output(tmp_path, no_hang):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for args, flag in [(["validate", fifo], f"{fifo}"), (["run", MLP, "--input", fifo], f"--input {fifo}"),
                       (["tensors", fifo], f"{fifo}")]:  # fmt: skip
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(f"{flag}: error: not a regular file (a pipe)"), result.stderr
    result = invoke("save", MLP, "-o", fifo)
    assert result.exit_code == 2
    assert result.stderr == (
        f"-o {fifo}: error: not a regular file (a pipe, device or socket): netcfg writes files only\n"
    )


def test_save_keeps_a_private_files_permissions_and_writes_through_a_link(tmp_path):
    target = tmp_path / "model.safetensors"
    save_file({"old": torch.zeros(1)}, target)
    target.chmod(0o600)
    link = tmp_path / "latest.safetensors"
    link.symlink_to(target.name)
    assert invoke("save", MLP, "-o", link).exit_code == 0
    assert link.is_symlink() and stat.S_IMODE(target.stat().st_mode) == 0o600
    assert read_header(target).tensors  # the link's target was replaced, the link kept


def test_save_to_a_name_near_the_length_limit(tmp_path):
    target = tmp_path / ("m" * 240 + ".safetensors")
    assert invoke("save", MLP, "-o", target).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def test_saving_a_meta_model_is_refused(tmp_path):
    result = invoke("save", MLP, "-o", tmp_path / "m.safetensors", "--device", "meta")
    assert result.exit_code == 2
    assert result.stderr == (
        "--device meta: error: cannot save a model on the meta device: it holds no values (use --device cpu)\n"
    )


def test_a_loaded_and_resaved_model_has_the_same_spec_text(tmp_path):
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    assert invoke("save", MLP, "-o", first, "--seed", "5").exit_code == 0
    ck.save(ck.load(first).built, second)
    assert read_header(first).metadata["netcfg.spec"] == read_header(second).metadata["netcfg.spec"]


def test_non_strict_load_skips_tensors_netcfg_cannot_place(tmp_path):
    source = tmp_path / "plain.safetensors"
    tensors = {"0.weight": torch.zeros(256, 20), "extra": torch.ones(3, dtype=torch.uint16)}
    save_file(tensors, source)
    result = invoke("load", source, "--config", MLP, "--non-strict")
    assert result.exit_code == 0, result.output
    assert "unexpected tensor 'extra' [3] uint16 (not in the model)" in result.stderr


def test_exotic_safetensors_dtypes_are_read(tmp_path):
    path = tmp_path / "exotic.safetensors"
    tensors = {"a": torch.ones(3, dtype=torch.float8_e4m3fn), "b": torch.ones(2, dtype=torch.uint16),
               "c": torch.ones(2, dtype=torch.complex64)}  # fmt: skip
    save_file(tensors, path)
    loaded = load_tensors(path)
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype
        assert torch.equal(loaded[name].view(torch.uint8), tensor.view(torch.uint8))


def test_save_tensors_with_views_of_one_storage(tmp_path):
    x = torch.arange(6.0)
    save_tensors({"a": x, "v": x[1:3]}, tmp_path / "t.safetensors")
    loaded = load_tensors(tmp_path / "t.safetensors")
    assert torch.equal(loaded["a"], x) and torch.equal(loaded["v"], x[1:3])


def test_an_input_too_large_for_memory_is_refused_before_drawing(write_spec):
    path = write_spec("netcfg: 1\ninput: {shape: [65536, 65536, 64]}\nmodel: {type: relu}\n")
    result = invoke("run", path)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{path}:2:16: error: the sample input [65536, 65536, 64] needs ")
    huge = write_spec("netcfg: 1\ninput: {shape: [2147483647, 2147483647]}\nmodel: {type: relu}\n")
    result = invoke("validate", huge)
    assert result.exit_code == 2
    assert "has 4,611,686,014,132,420,609 elements, more than 2**40" in result.stderr


def test_names_with_control_characters_print_escaped(tmp_path):
    path = tmp_path / "names.safetensors"
    save_file({"a\nb\x1b[31m": torch.zeros(1), "x,y": torch.zeros(1)}, path)
    listing = invoke("tensors", path)
    assert "a\\nb\\x1b[31m" in listing.stdout and "\x1b" not in listing.stdout
    table = invoke("inspect", path, "--format", "csv")
    assert '"x,y",F32,1,4' in table.stdout.splitlines()


def test_save_and_run_never_replace_a_file_that_is_not_safetensors(tmp_path):
    spec = tmp_path / "mlp.yaml"
    spec.write_text((CONFIGS / "mlp.yaml").read_text())
    for args, flag in [(["run", spec, "--output", spec], "--output"), (["save", spec, "-o", spec], "-o")]:
        result = invoke(*args)
        assert result.exit_code == 2
        assert result.stderr == (
            f"{flag} {spec}: error: exists and is not a safetensors file (the spec itself?): netcfg replaces only "
            "its own kind of file; remove it or pick another name\n"
        )
    assert spec.read_text() == (CONFIGS / "mlp.yaml").read_text()


def test_a_checkpoint_written_and_read_in_many_chunks_is_exact(tmp_path, monkeypatch):
    """Each read() and write() stops near 2 GiB on Linux: tensors go in chunks (here of 1000 bytes)."""
    from safetensors.torch import load_file

    from netcfg.building.builder import build_spec
    from netcfg.io import reading, tensor_files
    from netcfg.spec.loader import load_spec

    built = build_spec(load_spec(MLP), device="cpu", seed=4)
    path = tmp_path / "m.safetensors"
    ck.save(built, path)
    whole = path.read_bytes()
    monkeypatch.setattr(tensor_files, "CHUNK", 1000)
    monkeypatch.setattr(reading, "CHUNK", 1000)
    ck.save(built, path)
    assert path.read_bytes() == whole  # the same file, deterministic
    state = built.model.state_dict()
    loaded = ck.load(path).built.model.state_dict()
    plain = load_file(path)  # the reference reader agrees
    assert all(torch.equal(loaded[k], v) and torch.equal(plain[k], v) for k, v in state.items())


def test_tensors_lists_files_of_lists_and_list_like_names(tmp_path):
    """Issue 13: `netcfg tensors` on a list saved by save_tensors crashed (TypeError: expected string or
    bytes-like object, got 'int'); so must a file the safetensors library wrote with names "0", "1"."""
    x, y = torch.arange(3.0), torch.tensor([[1, 2], [3, 4]], dtype=torch.int32)
    save_tensors([x, y], tmp_path / "list.safetensors")
    save_file({"0": x, "1": y}, tmp_path / "library.safetensors")
    save_file({"0": x, "2": y}, tmp_path / "gap.safetensors", metadata={"netcfg.tensors": "list"})  # not 0..n-1
    expected = {
        "list.safetensors": ["a list of 2 tensors", "  0: [3] float32 [0, 1, 2]", "  1: [2, 2] int32 [1, 2, 3, 4]"],
        "library.safetensors": ["a dict of 2 tensors", "  0: [3] float32 [0, 1, 2]", "  1: [2, 2] int32 [1, 2, 3, 4]"],
        "gap.safetensors": ["a dict of 2 tensors", "  0: [3] float32 [0, 1, 2]", "  2: [2, 2] int32 [1, 2, 3, 4]"],
    }
    for name, lines in expected.items():
        result = invoke("tensors", tmp_path / name)
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines() == [f"{tmp_path / name}: {lines[0]}", *lines[1:]]
    assert [t.tolist() for t in load_tensors(tmp_path / "list.safetensors")] == [x.tolist(), y.tolist()]


def test_metadata_that_is_not_text_is_one_line_naming_the_key(tmp_path):
    """The safetensors format's metadata maps strings to strings (the library refuses a number too)."""
    import json
    import struct

    header = json.dumps({"__metadata__": {"count": 1}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})
    header += " " * (-len(header) % 8)
    path = tmp_path / "numbers.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header.encode() + bytes(4))
    for command in ("tensors", "inspect", "load"):
        result = invoke(command, path)
        assert result.exit_code == 2
        assert result.stderr == f"{path}: error: __metadata__ must map strings to strings: 'count' is 1\n"
