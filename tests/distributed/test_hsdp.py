"""HSDP (FSDP2 on a 2-D replicate x shard mesh) on 4 CPU processes (gloo): 2 replicas of 2 shards."""

import pytest
import torch

from netcfg.actions import distributed as dd
from netcfg.building.builder import build_spec
from tests.distributed.test_distributed import SMALL, forkserver, one_process_step, spec  # noqa: F401

pytestmark = pytest.mark.slow  # each launch starts 4 processes


def test_hsdp_sharded_init_gives_the_one_process_weights_exactly():
    s = spec(seed=11)
    reference = build_spec(s, device="cpu").model.state_dict()
    gathered = dd.full_state(s, 4, "hsdp", replicas=2)
    assert sorted(gathered) == sorted(reference)
    for key, tensor in reference.items():
        assert torch.equal(gathered[key], tensor), key


def test_hsdp_training_step_equals_one_process_on_the_same_global_batch():
    layers = [*SMALL["model"]["layers"]]
    layers[2] = {"type": "layernorm"}  # batch norm's statistics are each rank's own
    s = spec(model={"type": "sequential", "layers": layers}, input={"shape": [8, 16]})
    loss, grads = one_process_step(s)
    got = dd.train_step(s, 4, "hsdp", replicas=2)
    assert got["loss"] == pytest.approx(loss, rel=1e-6)
    assert sorted(got["grads"]) == sorted(grads)
    for name, grad in grads.items():
        torch.testing.assert_close(got["grads"][name], grad, rtol=1e-5, atol=1e-7, msg=name)
