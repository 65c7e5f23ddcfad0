"""Sharded save and load (--nproc, torch.distributed.checkpoint) on 2 CPU processes (gloo): the
same bytes as a one-process save, the same values and checksum as a one-process load, and a save
killed midway leaves the previous checkpoint as it was."""

import hashlib
import json
import os

import pytest
import torch
from typer.testing import CliRunner

from netcfg.actions import dist_checkpoint as dc
from netcfg.actions import distributed as dd
from netcfg.actions.checkpoint import load, save
from netcfg.actions.model import build_model
from netcfg.cli.app import app
from netcfg.io.shards import KEY_SET
from netcfg.io.tensor_files import save_tensors
from netcfg.spec.loader import load_spec, load_spec_data
from tests.conftest import ROOT
from tests.distributed.test_distributed import SMALL, forkserver  # noqa: F401  (forkserver: autouse)

pytestmark = pytest.mark.slow  # each launch starts 2 processes

TINY_GPT = ["vars.layers=2", "vars.heads=2", "vars.width=16", "vars.context=16", "vars.vocab=64",
            "input.shape=[2, 8]", "input.high=64", "dtype=bfloat16"]  # fmt: skip
"""configs/gpt2.yaml made tiny, in bfloat16: a tied embedding and head, attention, repeat units."""


def small(seed=3):
    return load_spec_data({**SMALL, "seed": seed}, "small.yaml")


def tiny_gpt():
    return load_spec(ROOT / "configs/gpt2.yaml", TINY_GPT)


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def files_of(folder) -> dict[str, str]:
    return {name: digest(folder / name) for name in sorted(os.listdir(folder))}


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_fsdp_save_writes_the_one_process_bytes_and_loads_bit_identical(tmp_path):
    unused = {"params": "nothing.*", "init": {"kind": "zeros"}}  # warned about, as one process warns
    spec = load_spec_data({**SMALL, "seed": 3, "init": [*SMALL["init"], unused]}, "small.yaml")
    sharded, single = tmp_path / "sharded.safetensors", tmp_path / "single.safetensors"
    result = dc.save(spec, sharded, 2, "fsdp")
    reference = build_model(spec)
    save(reference, single)
    assert digest(sharded) == digest(single)
    assert result.bytes == os.path.getsize(single) and result.parameters == 3605
    assert result.warnings == reference.warnings and len(reference.warnings) == 1
    loaded = load(sharded).built.model.state_dict()
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(loaded[name], tensor), name
    assert sorted(os.listdir(tmp_path)) == ["sharded.safetensors", "single.safetensors"]  # no temporaries


def test_a_tied_bfloat16_model_saved_as_shards_is_the_one_process_set(tmp_path):
    spec = tiny_gpt()
    (tmp_path / "dist").mkdir(), (tmp_path / "one").mkdir()
    index = "gpt.safetensors.index.json"
    result = dc.save(spec, tmp_path / "dist" / index, 2, "fsdp", seed=5, max_shard_size=4000)
    one = save(build_model(spec, seed=5), tmp_path / "one" / index, max_shard_size=4000)
    assert len(result.shards) == len(one.shards) > 2 and result.ties == one.ties == [
        ["transformer.wte.weight", "lm_head.weight"]]  # fmt: skip
    # Only the save's random id differs: in the shard names, the index and each shard's header.
    dist_id = json.loads((tmp_path / "dist" / index).read_text())["metadata"][KEY_SET]
    one_id = json.loads((tmp_path / "one" / index).read_text())["metadata"][KEY_SET]
    for mine, theirs in zip([index, *result.shards], [index, *one.shards], strict=True):
        assert mine.replace(dist_id, one_id) == theirs
        data = (tmp_path / "dist" / mine).read_bytes()
        assert data.replace(dist_id.encode(), one_id.encode()) == (tmp_path / "one" / theirs).read_bytes(), mine
    state = load(tmp_path / "dist" / index).built.model.state_dict()
    assert state["lm_head.weight"].dtype == torch.bfloat16


def test_ddp_save_on_the_command_line_writes_the_one_process_bytes(tmp_path):
    spec = ROOT / "configs/chapter/tied_params.yaml"
    result = cli("save", spec, "-o", tmp_path / "ddp.safetensors", "--nproc", 2, "--strategy", "ddp", "--seed", 4)
    assert result.exit_code == 0, result.output
    wrote = f"wrote {tmp_path / 'ddp.safetensors'} on 2 processes (ddp): 3 tensors, 1 tie group(s) stored once, "
    assert result.output.startswith(wrote)
    assert cli("save", spec, "-o", tmp_path / "one.safetensors", "--seed", 4).exit_code == 0
    assert digest(tmp_path / "ddp.safetensors") == digest(tmp_path / "one.safetensors")
    # and loaded whole on each process (the tie made again), for an input of the user's
    save_tensors(torch.randint(0, 100, (3, 5)), tmp_path / "ids.safetensors")
    check = ["--check", "--input", tmp_path / "ids.safetensors"]
    one = cli("load", tmp_path / "one.safetensors", *check)
    result = cli("load", tmp_path / "ddp.safetensors", "--nproc", 2, "--strategy", "ddp", *check)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].endswith("on 2 processes (ddp): 3 of 3 tensors")
    assert result.output.splitlines()[-1] == one.output.splitlines()[-1] and one.output.count("checksum ") == 1


def test_a_one_process_save_loads_sharded_with_the_same_state(tmp_path):
    spec = tiny_gpt()
    path = tmp_path / "gpt.safetensors"
    reference = build_model(spec, seed=2)
    reference.model.transformer.wte.weight.requires_grad_(False)  # a frozen tensor stays frozen
    save(reference, path)
    loaded = dc.load(path, 2, "fsdp", gather=True)
    state = reference.model.state_dict()
    assert loaded.tensors == len(state) - 1 and loaded.units > 0  # the tied head stored once
    assert loaded.frozen == ["transformer.wte.weight"]
    assert sorted(loaded.state) == sorted(state)
    for name, tensor in state.items():
        assert loaded.state[name].dtype == tensor.dtype and torch.equal(loaded.state[name], tensor), name


def test_sharded_load_check_prints_the_one_process_checksum(tmp_path):
    path = tmp_path / "gpt.safetensors"
    save(build_model(tiny_gpt(), seed=6), path)
    one = cli("load", path, "--check")
    assert one.exit_code == 0, one.output
    result = cli("load", path, "--nproc", 2, "--check")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"loaded {path} on 2 processes (fsdp, ") and lines[0].endswith(": 28 of 28 tensors")
    assert "device cpu (rank 0 of 2), dtype bfloat16" in lines[1]
    assert lines[-1] == one.output.splitlines()[-1] and lines[-1].startswith("checksum ")


def test_a_rank_killed_mid_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    from tests.distributed import faults

    spec = small(seed=1)
    (tmp_path / "small.yaml").write_text(json.dumps(SMALL))  # JSON is YAML
    index = tmp_path / "m.safetensors.index.json"
    save(build_model(spec), index, max_shard_size=2000)
    before = files_of(tmp_path)
    monkeypatch.setattr(dd, "_entry", faults.killed_mid_write)
    result = cli("save", tmp_path / "small.yaml", "-o", index, "--nproc", 2, "--max-shard-size", 1000, "--seed", 2)
    assert result.exit_code == 2
    assert result.output.count("\n") == 1, result.output
    assert result.output.startswith("--nproc: error: rank 1 was killed by SIGKILL"), result.output
    assert files_of(tmp_path) == before  # nothing new, nothing changed: no temporaries, no new shards
    for name, tensor in build_model(spec).model.state_dict().items():
        assert torch.equal(load(index).built.model.state_dict()[name], tensor), name
