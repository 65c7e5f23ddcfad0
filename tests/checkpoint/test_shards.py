"""Sharded checkpoints: an index and its shards, saved as a set and loaded bitwise.

The expected values come from the model itself (its state_dict, its output), from the
single-file save of the same model, and from the safetensors library reading each shard.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from netcfg.actions import checkpoint as ck
from netcfg.actions.model import build_model
from netcfg.cli.app import app
from netcfg.errors import CheckpointError, InputError
from netcfg.io import output, reading
from netcfg.io.reading import load_tensors
from netcfg.io.safetensors_header import read_header
from netcfg.spec.loader import load_spec
from tests.checkpoint import test_kill
from tests.checkpoint.test_kill import DECOYS, decoys_intact, digest, make_decoys, registered
from tests.checkpoint.test_roundtrip import same_outputs, state_equal, tied_names
from tests.conftest import CONFIGS, ROOT

MLP = CONFIGS / "mlp.yaml"
INDEX = "model.safetensors.index.json"


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def built_of(config: str, seed: int = 1, overrides: list[str] | None = None):
    spec = load_spec(CONFIGS / config, overrides or [])
    return spec, build_model(spec, device="cpu", seed=seed)


def shard_files(folder) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.endswith(".safetensors")}


@pytest.mark.parametrize(
    ("config", "overrides", "limit"),
    [
        ("mlp.yaml", [], 11_000),
        ("chapter/tied_params.yaml", [], 2_000),
        ("chapter/shared_layer.yaml", [], 300),
        ("resnet18.yaml", ["input.shape=[1, 3, 32, 32]"], 4_000_000),  # int64 buffers of batch norms too
    ],
)
def test_sharded_save_and_load_round_trip_bitwise(config, overrides, limit, tmp_path):
    spec, built = built_of(config, overrides=overrides)
    index = tmp_path / INDEX
    saved = ck.save(built, index, durable=False, max_shard_size=limit)
    assert len(saved.shards) > 1
    loaded = ck.load(index, device="cpu")
    state_equal(built.model, loaded.built.model)
    assert tied_names(loaded.built.model) == tied_names(built.model)
    assert same_outputs(loaded.built, built, spec, 1)

    single = tmp_path / "single.safetensors"
    ck.save(built, single, durable=False)
    reference = load_file(single)  # the library's reading of the one-file save
    pieces: dict[str, torch.Tensor] = {}
    data = json.loads(index.read_text())
    for name in saved.shards:
        with safe_open(tmp_path / name, framework="pt") as f:  # every shard is plain safetensors
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
        nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
        assert nbytes <= limit or len(tensors) == 1  # only a tensor larger than the limit is alone past it
        assert all(data["weight_map"][k] == name for k in tensors)
        pieces.update(tensors)
    assert set(pieces) == set(reference) == set(data["weight_map"])
    assert all(torch.equal(pieces[k], reference[k]) and pieces[k].dtype == reference[k].dtype for k in reference)
    assert data["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in reference.values())
    assert {k: v for k, v in data["metadata"].items() if k not in ("total_size", "netcfg.shard_set")} == (
        read_header(single).metadata
    )  # the same embedded spec, ties and versions as a one-file save


def test_a_sharded_save_replaces_the_set_it_wrote_and_nothing_else(tmp_path):
    _, a = built_of("mlp.yaml", seed=1)
    _, b = built_of("mlp.yaml", seed=2)
    index = tmp_path / INDEX
    users = {"model-00001-of-00002.safetensors", "notes.safetensors"}  # a user's files, one named like a shard
    for name in users:
        save_file({"x": torch.ones(2)}, tmp_path / name)
    first = ck.save(a, index, max_shard_size=11_000).shards
    second = ck.save(b, index, max_shard_size=11_000).shards
    assert set(first).isdisjoint(second)  # new names: the old index stayed whole until replaced
    assert shard_files(tmp_path) == set(second) | users  # the old set is gone, the user's files stay
    assert digest(ck.load(index).built.model) == digest(b.model)
    assert registered(tmp_path) == set()


def test_the_shards_of_an_index_netcfg_did_not_write_are_left_alone(tmp_path):
    """A Hugging Face style index (its shards written by the safetensors library) is replaced by a
    sharded save; its shards are not netcfg's to remove."""
    _, built = built_of("mlp.yaml")
    state = built.model.state_dict()
    theirs = {"hf-00001-of-00002.safetensors": ["0.weight", "0.bias"], "hf-00002-of-00002.safetensors": ["2.weight"]}
    theirs["hf-00002-of-00002.safetensors"].append("2.bias")
    for name, keys in theirs.items():
        save_file({k: state[k] for k in keys}, tmp_path / name, metadata={"format": "pt"})
    weight_map = {k: name for name, keys in theirs.items() for k in keys}
    (tmp_path / INDEX).write_text(json.dumps({"metadata": {"total_size": 31784}, "weight_map": weight_map}, indent=2))
    result = invoke("load", tmp_path / INDEX, "--config", MLP, "--check")  # theirs loads with a spec
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"loaded {tmp_path / INDEX}: 4 of 4 tensors\n")
    assert invoke("inspect", tmp_path / INDEX).stdout.splitlines()[1] == "not written by netcfg (no embedded spec)"
    saved = ck.save(built, tmp_path / INDEX, max_shard_size=11_000)
    assert shard_files(tmp_path) == set(theirs) | set(saved.shards)


def test_a_copy_of_the_index_keeps_its_shards(tmp_path):
    _, a = built_of("mlp.yaml", seed=1)
    index = tmp_path / INDEX
    first = ck.save(a, index, max_shard_size=11_000).shards
    (tmp_path / "copy.safetensors.index.json").write_bytes(index.read_bytes())
    second = ck.save(a, index, max_shard_size=11_000).shards
    assert shard_files(tmp_path) == set(first) | set(second)  # the copy still names the first set
    assert digest(ck.load(tmp_path / "copy.safetensors.index.json").built.model) == digest(a.model)


def test_a_save_that_fails_midway_leaves_the_old_set(tmp_path, monkeypatch):
    _, a = built_of("mlp.yaml", seed=1)
    _, b = built_of("mlp.yaml", seed=2)
    index = tmp_path / INDEX
    old = ck.save(a, index, max_shard_size=11_000).shards
    before = index.read_bytes()
    real, calls = output.replacing, []

    @contextlib.contextmanager
    def failing(target, *args, **kwargs):  # the second file: the disk fills up while it is written
        calls.append(target)
        with real(target, *args, **kwargs) as out:
            if len(calls) == 2:
                out.write(b"partial")
                raise OSError(28, "No space left on device")
            yield out

    monkeypatch.setattr(output, "replacing", failing)
    with pytest.raises(InputError, match="cannot write: No space left on device"):
        ck.save(b, index, max_shard_size=11_000)
    assert index.read_bytes() == before and shard_files(tmp_path) == set(old)  # the first new shard removed
    assert registered(tmp_path) == set()
    assert digest(ck.load(index).built.model) == digest(a.model)


def test_an_index_and_its_shards_load_into_a_model_and_as_tensors(tmp_path):
    _, built = built_of("chapter/tied_params.yaml")
    index = tmp_path / INDEX
    ck.save(built, index, max_shard_size=2_000)
    _, fresh = built_of("chapter/tied_params.yaml", seed=7)
    ck.load_into(fresh.model, index)
    state_equal(built.model, fresh.model)
    assert tied_names(fresh.model) == [["embed.weight", "head.weight"]]
    tensors = load_tensors(index)
    assert set(tensors) == {"embed.weight", "norm.weight", "norm.bias"}  # the tie stored once
    assert torch.equal(tensors["embed.weight"], built.model.embed.weight)


def test_a_meta_load_of_an_index_reads_no_tensor(tmp_path, monkeypatch):
    _, built = built_of("mlp.yaml")
    ck.save(built, tmp_path / INDEX, max_shard_size=11_000)

    def refuse(*args, **kwargs):
        raise AssertionError("tensor data read for a meta load")

    monkeypatch.setattr(reading, "read_one", refuse)
    monkeypatch.setattr(reading.TensorSource, "copy_into", refuse)
    result = invoke("load", tmp_path / INDEX, "--device", "meta")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"checked {tmp_path / INDEX}: 4 tensors fit the model (meta device: no data read)")


def test_a_shard_named_alone_says_to_load_the_index(tmp_path):
    _, built = built_of("mlp.yaml")
    shard = ck.save(built, tmp_path / INDEX, max_shard_size=11_000).shards[0]
    result = invoke("load", tmp_path / shard)
    assert result.exit_code == 2
    assert result.stderr == (f"{tmp_path / shard}: error: one shard of a sharded checkpoint: load its index "
                             "(NAME.safetensors.index.json)\n")  # fmt: skip


def test_cli_save_with_max_shard_size(tmp_path):
    index = tmp_path / INDEX
    result = invoke("save", MLP, "-o", index, "--max-shard-size", "11kB", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"wrote {index}: 4 tensors in 3 shard(s), 7,946 parameters, ")
    assert (
        invoke("load", index, "--check").stdout.splitlines()[-1]
        == invoke("run", MLP, "--seed", "3").stdout.splitlines()[-1]
    )  # the checksum of run's output


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--max-shard-size", "2XB"], "--max-shard-size 2XB: error: expected a size such as 500MB, 2GB or 1GiB (B, kB, "
                                      "MB, GB, TB; KiB, MiB, GiB, TiB), got '2XB'"),
        (["--max-shard-size", "0GB"], "--max-shard-size 0GB: error: must be at least 1 byte, got '0GB' (0 bytes)"),
        (["--max-shard-size", "1GB", "-o", "{tmp}/model.safetensors"], "-o {tmp}/model.safetensors: error: a sharded "
         "checkpoint is written as its index: name it NAME.safetensors.index.json (the shards go beside it)"),
        (["--max-shard-size", "1GB", "-o", "{tmp}/spec.index.json"], "-o {tmp}/spec.index.json: error: exists and is "
         "not a safetensors index (a JSON object with a weight_map) (the spec itself?): netcfg replaces only its own "
         "kind of file; remove it or pick another name"),
    ],
)  # fmt: skip
def test_cli_save_refuses_a_bad_size_or_output_in_one_line(args, line, tmp_path):
    (tmp_path / "spec.index.json").write_text('{"netcfg": 1}')
    args = [a.format(tmp=tmp_path) for a in args]
    result = invoke("save", MLP, *(args if "-o" in args else [*args, "-o", tmp_path / INDEX]))
    assert result.exit_code == 2
    assert result.stderr == line.format(tmp=tmp_path) + "\n"
    assert shard_files(tmp_path) == set()


def test_a_set_too_many_shards_is_refused_before_writing(tmp_path, monkeypatch):
    from netcfg.io import shards

    monkeypatch.setattr(shards, "MAX_SHARDS", 3)
    _, built = built_of("mlp.yaml")
    with pytest.raises(CheckpointError, match="would write 4 shards, more than the 3 an index may name"):
        ck.save(built, tmp_path / INDEX, max_shard_size=1)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- killed at every step

WARMUP = (
    'ck.save(built, target + ".warmup")  # lazy imports done here, not in each writer\nos.remove(target + ".warmup")\n'
)
SHARDED_WARMUP = """warm = os.path.join(os.path.dirname(os.path.dirname(target)), "warmup")
os.mkdir(warm)
ck.save(built, os.path.join(warm, "w.safetensors.index.json"), max_shard_size=8000)  # lazy imports done here
shutil.rmtree(warm)
"""
PHASES = test_kill.PHASES.replace(WARMUP, SHARDED_WARMUP).replace("import fcntl, os,", "import fcntl, os, shutil,")
PHASES = PHASES.replace("ck.save(built, target)\n", "ck.save(built, target, max_shard_size=8000)\n")
"""test_kill's server, saving shards of at most 8,000 bytes (4 shards) instead of one file."""


def test_sigkill_at_every_step_of_a_sharded_save(tmp_path):
    """Killed before each system call of a sharded save in turn: the index always loads, as the old
    model (A) or the new (B), never naming a missing shard; the next save removes every file the
    killed one left (shards of an uncommitted set, the old set of a committed one, temporary files)
    and every record; the user's look-alike files stay."""
    a = build_model(load_spec(MLP, ["model.layers.0.out_features=256"]), device="cpu", seed=1)
    b = build_model(load_spec(MLP, ["model.layers.0.out_features=300"]), device="cpu", seed=2)
    names = {digest(a.model): "A", digest(b.model): "B"}
    folder = tmp_path / "models"
    folder.mkdir()
    index = folder / INDEX
    make_decoys(folder)

    def save_a() -> set[str]:
        return {INDEX, *ck.save(a, index, durable=False, max_shard_size=8000).shards}

    expected = save_a()
    server = subprocess.Popen([sys.executable, "-c", PHASES, str(index), str(MLP)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)  # fmt: skip
    seen, left = [], 0
    try:
        assert server.stdout.readline().strip() == "ready"
        for n in range(1, 2000):
            server.stdin.write(f"{n}\n")
            server.stdin.flush()
            status = int(server.stdout.readline())
            seen.append(names[digest(ck.load(index, device="cpu").built.model)])  # whole, A or B
            if os.WIFEXITED(status):
                assert os.WEXITSTATUS(status) == 0 and seen[-1] == "B"
                break
            assert os.WTERMSIG(status) == signal.SIGKILL
            left += len({p.name for p in folder.iterdir()} - expected - set(DECOYS))
            expected = save_a()  # the next save: cleans up after the killed one
            assert {p.name for p in folder.iterdir()} == expected | set(DECOYS), n
            assert registered(folder) == set(), n
            assert decoys_intact(folder)
    finally:
        server.stdin.close()
        server.kill()
        server.wait()
    assert PHASES.count("max_shard_size=8000") == 2  # both replacements took
    assert seen[-1] == "B" and len(seen) > 50, seen
    assert "B" in seen[:-1] and left >= 10, (seen, left)  # kills after the commit too; many left files
    print(f"\n{len(seen) - 1} steps killed: index was {''.join(seen)}; {left} files left, removed by the next save")


def test_pretrained_reads_a_sharded_checkpoint(tmp_path):
    """`pretrained:` takes an index as well as a file: the first layer comes from the shards."""
    _, source = built_of("mlp.yaml", seed=4)
    ck.save(source, tmp_path / INDEX, max_shard_size=11_000)
    text = (CONFIGS / "chapter" / "reuse_first_layers.yaml").read_text()
    spec = tmp_path / "reuse.yaml"
    spec.write_text(text.replace("file: mlp_trained.safetensors", f"file: {INDEX}"))
    built = build_model(load_spec(spec), device="cpu", seed=0)
    assert torch.equal(built.model.features[0].weight, source.model[0].weight)
    assert torch.equal(built.model.features[0].bias, source.model[0].bias)
    assert not built.model.features[0].weight.requires_grad
    (tmp_path / [p.name for p in tmp_path.iterdir() if p.name.endswith("00001-of-00003.safetensors")][0]).unlink()
    with pytest.raises(CheckpointError, match=r"pretrained 0: .*: shard 'model-\w+-00001-of-00003.safetensors' "
                                              r"\(tensor '0.weight'\): no such file"):  # fmt: skip
        build_model(load_spec(spec), device="cpu")


def test_an_index_named_through_a_link_keeps_its_shards_beside_the_link(tmp_path):
    """Readers look for shards beside the index they are given (Hugging Face's cache links every file)."""
    (tmp_path / "real").mkdir()
    (tmp_path / "view").mkdir()
    (tmp_path / "real" / INDEX).write_text('{"weight_map": {}}')
    (tmp_path / "view" / INDEX).symlink_to(tmp_path / "real" / INDEX)
    _, built = built_of("mlp.yaml")
    saved = ck.save(built, tmp_path / "view" / INDEX, max_shard_size=11_000)
    assert (tmp_path / "view" / INDEX).is_symlink()  # the link stays; the file it points to is replaced
    assert shard_files(tmp_path / "view") == set(saved.shards) and shard_files(tmp_path / "real") == set()
    assert digest(ck.load(tmp_path / "view" / INDEX).built.model) == digest(built.model)
