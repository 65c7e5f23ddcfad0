"""The per-rank memory guard of build/run/bench --nproc: counted on meta before anything starts (fast)."""

import pytest
import torch
from typer.testing import CliRunner

from netcfg.actions import dist_model as dm
from netcfg.actions import distributed as dd
from netcfg.building import memory
from netcfg.building.builder import build_spec
from netcfg.cli.app import app
from netcfg.errors import BuildError
from netcfg.spec.loader import load_spec_data

WIDTH = 4096
BIG = {  # four 4096x4096 linears: 67,125,248 parameters, 268.5 MB in float32 (only ever built on meta here)
    "netcfg": 1,
    "input": {"shape": [8, WIDTH]},
    "model": {"type": "repeat", "times": 4, "body": {"type": "linear", "out_features": WIDTH}},
}
LAYER = WIDTH * WIDTH + WIDTH  # one unit (a repeat copy)
PARAMS = 4 * LAYER
LIMIT = 150_000_000  # the faked free memory: less than the model, more than a quarter of it plus one unit


@pytest.fixture
def spec():
    return load_spec_data(BIG, "big.yaml")


def test_a_rank_s_share_is_its_part_of_the_state_plus_one_unit_gathered(spec):
    meta = build_spec(spec, device="meta")
    fsdp = dm.share(meta, dm.Plan("fsdp", 4))
    assert (fsdp.state, fsdp.whole_state, fsdp.gathered, fsdp.buffers) == (PARAMS * 4 // 4, PARAMS * 4, LAYER * 4, 0)
    hsdp = dm.share(meta, dm.Plan("hsdp", 4, replicas=2))  # two copies, each over 2 ranks
    assert hsdp.state == PARAMS * 4 // 2
    ddp = dm.share(meta, dm.Plan("ddp", 4))
    assert (ddp.state, ddp.gathered, ddp.buckets) == (PARAMS * 4, 0, PARAMS * 4)  # buckets: DDP's reducer
    # training: parameters, gradients and AdamW's two moments, divided over the shard group
    assert dm.share(meta, dm.Plan("fsdp", 4), training=True).state == 4 * PARAMS * 4 // 4


def test_activations_are_planned_for_the_per_rank_batch(spec):
    from netcfg.actions.bench import with_batch
    from netcfg.building import memplan

    meta = build_spec(spec, device="meta")
    mine = dm.share(meta, dm.Plan("fsdp", 4), rank_spec=with_batch(spec, 2))
    alone = memplan.plan(build_spec(with_batch(spec, 2), device="meta").visits, 4).bytes
    assert mine.batch == 2 and mine.activations == alone > 0
    # a sequential of linears keeps the input and one output alive at a time: 2 x [2, 4096] floats at least
    assert alone >= 2 * 2 * WIDTH * 4


def test_a_model_too_large_for_one_gpu_fits_sharded_over_four(spec, monkeypatch):
    monkeypatch.setattr(memory, "available", lambda device: LIMIT)
    with pytest.raises(BuildError, match="not enough memory on cpu"):
        build_spec(spec, device="cpu")  # the one-process check refuses it
    meta = build_spec(spec, device="meta")
    gpu = torch.device("cuda")
    plan = dm.Plan("fsdp", 4)
    dm.check_memory(plan, gpu, dm.share(meta, plan))  # a quarter (67.1 MB) + one unit (67.1 MB) per GPU: passes
    with pytest.raises(BuildError) as caught:
        dm.check_memory(dm.Plan("ddp", 4), gpu, dm.share(meta, dm.Plan("ddp", 4)))
    assert str(caught.value) == (
        "--nproc 4: error: not enough memory on cuda for 4 processes: each rank needs about 512.1 MiB (parameters "
        "256.1 MiB, the whole model; DDP's gradient buckets 256.1 MiB; buffers 0 B), 512.1 MiB for each GPU, "
        "143.1 MiB are available (pass --no-memory-check)"
    )


def test_ranks_on_one_host_share_its_memory(spec, monkeypatch):
    monkeypatch.setattr(memory, "available", lambda device: LIMIT)
    meta = build_spec(spec, device="meta")
    plan = dm.Plan("fsdp", 4)
    with pytest.raises(BuildError) as caught:
        dm.check_memory(plan, torch.device("cpu"), dm.share(meta, plan))
    per_rank = (PARAMS // 4 + LAYER) * 4
    assert per_rank * 4 > LIMIT > per_rank
    assert (
        "each rank needs about 128.0 MiB (parameters 64.0 MiB, 1/4 of 256.1 MiB; the largest unit gathered "
        "64.0 MiB; buffers 0 B), 512.1 MiB for 4 ranks on this host, 143.1 MiB are available" in str(caught.value)
    )


def invoke(*args):
    return CliRunner().invoke(app, [*args])


@pytest.fixture
def big_file(tmp_path):
    import yaml

    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(BIG))
    return str(path)


def test_the_commands_refuse_before_launching_and_no_memory_check_lets_them_start(big_file, monkeypatch):
    monkeypatch.setattr(memory, "available", lambda device: LIMIT)
    launched = []
    monkeypatch.setattr(dd, "launch", lambda job, n: launched.append((job.task, n)))  # None: as a rank other than 0
    for command, first in (
        (["build"], "2 processes"),
        (["run"], "2 processes"),
        (["bench", "--mode", "train"], "1 process"),
    ):  # bench: its 1-process baseline first
        result = invoke(*command, big_file, "--device", "cpu", "--nproc", "2", "--strategy", "fsdp")
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(f"--nproc {first[0]}: error: not enough memory on cpu for {first}: each rank")
        assert result.stderr.count("\n") == 1
    assert launched == []
    for command in (["build"], ["run"], ["bench"]):
        result = invoke(*command, big_file, "--device", "cpu", "--nproc", "2", "--strategy", "fsdp",
                        "--no-memory-check")  # fmt: skip
        assert result.exit_code == 0, result.output
    assert launched == [("build", 2), ("run", 2), ("bench", 1), ("bench", 2)]  # bench: its baseline, then 2


def test_a_batch_given_to_bench_keeps_the_units_to_shard(spec):
    from netcfg.actions.bench import BenchConfig, with_batch
    from netcfg.building import distributed as d

    assert with_batch(spec, 2).units == spec.units  # the expanded data alone no longer says which were copies
    meta = dm.prepare_bench(spec, dm.Plan("fsdp", 2), BenchConfig(device="cpu", batch=2, memory_check=False))
    assert d.unit_paths(meta) == ["0", "1", "2", "3"]
