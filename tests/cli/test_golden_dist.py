"""build/run --nproc refusals: one line, exit 2, nothing launched (each is found before any process starts)."""

import pytest

from netcfg.actions import distributed as dd
from tests.cli.test_golden import VALID, at_root, golden  # noqa: F401  (at_root: run from the repository root)

BLOCKS = "tests/golden/cli/blocks.yaml"  # input [8, 3]; two 3x3 linears: units, rows split in at most 3 parts

CASES = [
    pytest.param(
        ["run", VALID, "--nproc", "4"],
        "--nproc 4: error: the batch (2) is smaller than the 4 processes: a rank would run no sample; use at most 2\n",
        id="run-batch-smaller-than-nproc",
    ),
    pytest.param(
        ["run", VALID, "--nproc", "2", "--set", "input.shape=[3, 20]"],
        "--nproc 2: error: the batch (3) must split evenly over 2 processes\n",
        id="run-batch-not-divisible",
    ),
    pytest.param(
        ["build", BLOCKS, "--nproc", "4", "--strategy", "fsdp"],
        "--nproc 4: error: --strategy fsdp over 4 processes leaves a rank holding no parameter: no parameter splits "
        "into 4 non-empty parts along its first dimension (the largest has 3 rows); use a shard group of at most 3 "
        "processes, or --strategy ddp\n",
        id="fsdp-rank-without-parameters",
    ),
    pytest.param(
        ["run", BLOCKS, "--nproc", "8", "--strategy", "hsdp", "--replicas", "2"],
        "--nproc 8: error: --strategy hsdp over each shard group's 4 processes leaves a rank holding no parameter: "
        "no parameter splits into 4 non-empty parts along its first dimension (the largest has 3 rows); use a shard "
        "group of at most 3 processes, or --strategy ddp\n",
        id="hsdp-rank-without-parameters",
    ),
    pytest.param(
        ["build", VALID, "--nproc", "2", "--strategy", "fsdp"],
        "--strategy fsdp: error: --strategy fsdp needs units to shard and this model has none (no repeat and no block "
        "template); name some in a shard: section (shard: {units: [linear]}), or use --strategy ddp\n",
        id="fsdp-no-units",
    ),
    pytest.param(
        ["build", BLOCKS, "--nproc", "2", "--strategy", "hsdp"],
        "--strategy hsdp: error: needs --replicas R: R copies of the model, each sharded over 2 / R processes (R "
        "dividing 2); the default, one copy per node, does not apply on one node\n",
        id="hsdp-without-replicas",
    ),
    pytest.param(
        ["build", BLOCKS, "--nproc", "4", "--strategy", "hsdp", "--replicas", "3"],
        "--replicas 3: error: must divide the 4 processes (R copies of 4 / R ranks)\n",
        id="hsdp-replicas-not-dividing",
    ),
    pytest.param(
        ["build", BLOCKS, "--nproc", "2", "--replicas", "2"],
        "--replicas 2: error: applies to --strategy hsdp only (R copies of the model, each sharded)\n",
        id="replicas-without-hsdp",
    ),
    pytest.param(
        ["run", BLOCKS, "--strategy", "fsdp"],
        "--strategy fsdp: error: needs --nproc N (the number of processes)\n",
        id="strategy-without-nproc",
    ),
    pytest.param(
        ["run", "configs/chapter/mlp_trained.safetensors", "--nproc", "2"],
        "--nproc: error: does not apply to a checkpoint: run its spec on N processes\n",
        id="run-checkpoint-with-nproc",
    ),
    pytest.param(
        ["train", BLOCKS, "--nproc", "2", "--strategy", "hsdp"],
        "--strategy hsdp: error: train does not take --strategy hsdp yet: use ddp or fsdp\n",
        id="train-hsdp",
    ),
    pytest.param(
        ["save", BLOCKS, "-o", "never.safetensors", "--nproc", "2", "--strategy", "hsdp"],
        "--strategy hsdp: error: save and load do not take --strategy hsdp yet: use ddp or fsdp\n",
        id="save-hsdp",
    ),
    pytest.param(
        ["build", BLOCKS, "--nproc", "0"],
        "--nproc 0: error: must be between 1 and 64, got '0'\n",
        id="build-nproc-zero",
    ),
]


@pytest.mark.parametrize("args, expected", CASES)
def test_golden_distributed_command_line(args: list[str], expected: str, monkeypatch):
    monkeypatch.setattr(dd, "launch", lambda *a: pytest.fail("launched"))
    code, stdout, stderr = golden.run_cli(args)
    assert "Traceback" not in stdout + stderr, stderr
    assert (code, stdout) == (2, ""), f"exit code {code}\nstdout: {stdout}\nstderr: {stderr}"
    assert stderr == expected


def test_the_blocks_base_spec_is_valid():
    code, _, stderr = golden.run_cli(["validate", BLOCKS])
    assert (code, stderr) == (0, ""), stderr
