"""DDP and FSDP2 on 2 CPU processes (gloo): exact sharded init, train-step parity, failures as one line."""

import pytest
import torch

from netcfg.actions import distributed as dd
from netcfg.building.builder import build_spec, sample_input
from netcfg.errors import BuildError, InputError
from netcfg.spec.loader import load_spec_data

pytestmark = pytest.mark.slow  # each launch starts 2 processes

SMALL = {
    "netcfg": 1,
    "input": {"shape": [4, 16]},
    "blocks": {
        "mlp_block": {
            "body": {"type": "sequential", "layers": [
                {"type": "linear", "out_features": 32}, {"type": "gelu"}, {"type": "linear", "out_features": 16},
            ]},
        },
    },
    "model": {"type": "sequential", "layers": [
        {"type": "linear", "out_features": 16},
        {"type": "repeat", "times": 3, "body": {"type": "block", "block": "mlp_block"}},
        {"type": "batchnorm1d"},
        {"type": "linear", "out_features": 5},
    ]},
    "init": [
        {"params": "*.weight", "layers": "linear", "init": {"kind": "normal", "std": 0.05}},
        {"params": "1.1.*.weight", "init": {"kind": "orthogonal"}},
    ],
}  # fmt: skip


@pytest.fixture(autouse=True)
def forkserver(monkeypatch):
    # seconds faster than spawn per rank; not fork: a rank forked from this process, which has run
    # OpenMP-parallel torch ops, can hang in its first parallel region (GNU libgomp)
    monkeypatch.setattr(dd, "START_METHOD", "forkserver")


def spec(**changes):
    return load_spec_data({**SMALL, **changes}, "small.yaml")


def one_process_step(s):
    built = build_spec(s, device="cpu")
    loss = built.model(sample_input(s, "cpu")).float().mean()
    loss.backward()
    return loss.item(), {name: p.grad for name, p in built.model.named_parameters()}


def test_sharded_init_gives_the_one_process_weights_exactly():
    s = spec(seed=7)
    reference = build_spec(s, device="cpu").model.state_dict()
    gathered = dd.full_state(s, 2, "fsdp")
    assert sorted(gathered) == sorted(reference)
    for key, tensor in reference.items():
        assert torch.equal(gathered[key], tensor), key


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_one_training_step_equals_one_process_on_the_same_global_batch(strategy):
    layers = [*SMALL["model"]["layers"]]
    layers[2] = {"type": "layernorm"}  # batch norm's statistics are each rank's own, as with plain DDP
    s = spec(model={"type": "sequential", "layers": layers})
    loss, grads = one_process_step(s)
    got = dd.train_step(s, 2, strategy)
    assert got["loss"] == pytest.approx(loss, rel=1e-6)
    assert sorted(got["grads"]) == sorted(grads)
    for name, grad in grads.items():
        torch.testing.assert_close(got["grads"][name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_fsdp_on_a_model_without_blocks_is_one_line_naming_the_flag():
    flat = spec(model={"type": "sequential", "layers": [{"type": "linear", "out_features": 4}]})
    with pytest.raises(InputError, match=r"--strategy fsdp needs units to shard and this model has none"):
        dd.full_state(flat, 2, "fsdp")


def test_a_shard_entry_that_names_nothing_points_at_it():
    with pytest.raises(BuildError) as caught:
        dd.full_state(spec(shard={"units": ["repeat", "mlp_blok"]}), 2, "fsdp")
    (problem,) = caught.value.diagnostics
    assert problem.message.startswith("shard unit 'mlp_blok' names nothing in this model")
    assert "did you mean 'mlp_block'?" in problem.message
    assert problem.loc.file == "small.yaml"


def test_named_units_and_checkpointing_keep_the_exact_weights():
    s = spec(shard={"units": ["linear", "1.*"], "checkpoint": True})
    gathered = dd.full_state(s, 2, "fsdp")
    for key, tensor in build_spec(s, device="cpu").model.state_dict().items():
        assert torch.equal(gathered[key], tensor), key


def test_bench_reports_each_rank_and_the_scaling_efficiency():
    from netcfg.actions.bench import BenchConfig
    from netcfg.cli.bench_dist import table

    config = BenchConfig(device="cpu", mode="train", warmup=1, min_time=0.05, max_time=0.5)
    s = spec()
    results = dd.with_efficiency([dd.bench(s, config, n, "fsdp") for n in (1, 2)])
    one, two = results
    assert [len(r.ranks) for r in results] == [1, 2] and two.global_batch == 2 * two.batch == 8
    assert one.efficiency == 1.0
    assert two.efficiency == pytest.approx(two.samples_per_s / (2 * one.samples_per_s))
    assert two.samples_per_s == pytest.approx(8 / two.median) and two.median == max(r.median for r in two.ranks)
    # weights, gradients and both AdamW moments are sharded: each rank holds about half
    params = sum(p.numel() for p in build_spec(s, device="meta").model.parameters()) * 4
    assert one.ranks[0].state_bytes >= 4 * params
    for rank in two.ranks:
        assert 0.4 < rank.state_bytes / one.ranks[0].state_bytes < 0.6
    text = table(results)
    assert "efficiency" in text and "fsdp: 3 units + the root" in text and "\nfsdp          2" in text


def test_bench_of_a_model_with_named_inputs_and_a_dict_output():
    # the rank read spec.head.input, a dict for named inputs: "'dict' object has no attribute 'shape'"
    from netcfg.actions.bench import BenchConfig

    s = load_spec_data({
        "netcfg": 1,
        "input": {"ids": {"shape": [4, 6], "dtype": "int64", "high": 50},
                  "types": {"shape": [4, 6], "dtype": "int64", "high": 2}},
        "model": {"type": "graph", "nodes": {
            "tok": {"type": "embedding", "num_embeddings": 50, "embedding_dim": 8, "inputs": "ids"},
            "typ": {"type": "embedding", "num_embeddings": 2, "embedding_dim": 8, "inputs": "types"},
            "sum": {"type": "add", "inputs": ["tok", "typ"]},
            "cls": {"type": "select", "dim": 1, "index": 0},
        }, "output": {"sequence": "sum", "pooled": "cls"}},
    }, "named.yaml")  # fmt: skip
    config = BenchConfig(device="cpu", mode="train", warmup=1, min_time=0.05, max_time=0.5)
    result = dd.bench(s, config, 2, "ddp")
    assert (result.batch, result.global_batch, len(result.ranks)) == (4, 8, 2)
