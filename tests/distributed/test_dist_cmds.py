"""netcfg build/run --nproc on 2 CPU processes (gloo), through the CLI: the one-process report and outputs."""

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from netcfg.building.builder import build_spec
from netcfg.cli.app import app
from netcfg.spec.loader import load_spec_data
from tests.distributed.test_distributed import SMALL, forkserver  # noqa: F401

pytestmark = pytest.mark.slow  # each launch starts 2 processes

RUNNABLE = {**SMALL, "model": {"type": "sequential", "layers": [
    *SMALL["model"]["layers"][:2], {"type": "layernorm"}, SMALL["model"]["layers"][3]]}}  # fmt: skip


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(RUNNABLE))
    return str(path)


def invoke(*args):
    result = CliRunner().invoke(app, [*args])
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_build_reports_the_one_process_summary_and_each_rank_s_shard(spec_file):
    alone = invoke("build", spec_file, "--device", "cpu")
    lines = invoke("build", spec_file, "--device", "cpu", "--nproc", "2", "--strategy", "fsdp")
    tree = alone[:-1]
    assert lines[: len(tree)] == tree
    assert lines[len(tree)] == alone[-1].replace("device cpu,", "device cpu (2 processes, fsdp),")
    assert lines[len(tree) + 1] == "fsdp: 3 units + the root"
    ranks = lines[len(tree) + 2 :]
    assert [line.split(", ")[0] for line in ranks] == [f"rank {r}: parameters {held(r, 2)}" for r in (0, 1)]


def held(rank: int, shards: int) -> str:
    """What a rank of a shard group holds: its part of each parameter's rows (torch.chunk, as FSDP2 cuts)."""
    from netcfg.text import human_bytes

    model = build_spec(load_spec_data(RUNNABLE, "small.yaml"), device="meta").model
    return human_bytes(sum(p.chunk(shards)[rank].numel() * 4 for p in model.parameters()))


@pytest.mark.parametrize("strategy, batch", [("ddp", None), ("fsdp", 6)])
def test_run_gives_the_one_process_outputs_and_checksum(spec_file, strategy, batch, tmp_path):
    given = []
    if batch is not None:  # --input: the file's batch is the global batch, split over the ranks
        save_file({"input": torch.randn(batch, 16, generator=torch.Generator().manual_seed(2))}, tmp_path / "x.st")
        given = ["--input", str(tmp_path / "x.st")]
    alone = invoke("run", spec_file, "--device", "cpu", "--seed", "5", *given, "-o", str(tmp_path / "one.st"))
    lines = invoke("run", spec_file, "--device", "cpu", "--seed", "5", *given, "--nproc", "2", "--strategy", strategy,
                   "-o", str(tmp_path / "two.st"))  # fmt: skip
    assert lines[0] == alone[0].replace("device cpu,", f"device cpu (2 processes, {strategy}),")
    assert lines[1] == f"input  [{batch or 4}, 16] float32"
    one, two = load_file(tmp_path / "one.st"), load_file(tmp_path / "two.st")
    torch.testing.assert_close(two["output"], one["output"], rtol=1e-6, atol=1e-7)
    # on this CPU a linear layer's rows do not depend on the other rows: bit-equal, the same checksum
    assert lines[1:-1] == alone[1:-1] and lines[-1] == f"wrote {tmp_path / 'two.st'}"
    assert torch.equal(two["output"], one["output"])


def test_hsdp_build_shards_within_each_replica(spec_file):
    lines = invoke("build", spec_file, "--device", "cpu", "--nproc", "4", "--strategy", "hsdp", "--replicas", "2")
    assert "device cpu (4 processes, 2 replicas x 2 shards)" in lines[-6]
    # mesh [[0, 1], [2, 3]]: ranks 0 and 2 hold the first half of every parameter, 1 and 3 the second
    expected = [f"rank {r}: parameters {held(r % 2, 2)}" for r in range(4)]
    assert [line.split(", ")[0] for line in lines[-4:]] == expected


def test_fsdp_loads_the_spec_s_pretrained_checkpoints_into_the_shards(tmp_path):
    # through a sharded save (netcfg save --nproc 2 --strategy fsdp), which build/run/train share
    from netcfg.actions import dist_checkpoint
    from netcfg.actions.model import build_model
    from netcfg.spec.loader import load_spec
    from tests.conftest import ROOT

    path = ROOT / "configs/chapter/reuse_first_layers.yaml"  # features.0 from mlp_trained.safetensors, frozen
    s = load_spec(path, ["shard={units: [linear]}"])
    reference = build_model(s, device="cpu").model.state_dict()
    dist_checkpoint.save(s, tmp_path / "m.safetensors", 2, "fsdp")
    saved = load_file(tmp_path / "m.safetensors")
    assert sorted(saved) == sorted(reference)
    for key, tensor in reference.items():
        assert torch.equal(saved[key], tensor), key
    file = load_file(path.parent / "mlp_trained.safetensors")
    assert torch.equal(saved["features.0.weight"], file["0.weight"])  # the file's, not the init's


def test_each_rank_loads_the_plugins_the_user_named():
    from tests.conftest import ROOT

    spec, plugin = ROOT / "configs/plugins/fixed_hidden_mlp.yaml", "examples/plugins/fixed_hidden.py"
    alone = invoke("build", str(spec), "--device", "cpu", "--plugin", plugin)
    lines = invoke("build", str(spec), "--device", "cpu", "--plugin", plugin, "--nproc", "2")
    assert lines[: len(alone)] == [*alone[:-1], alone[-1].replace("device cpu,", "device cpu (2 processes, ddp),")]
    assert [line.split(":")[0] for line in lines[len(alone) :]] == ["rank 0", "rank 1"]
