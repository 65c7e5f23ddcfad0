"""Checks that need a CUDA GPU; skipped (and reported as skipped) where there is none."""

import pytest
import torch

import netcfg
from netcfg.building.builder import build_spec, sample_input
from netcfg.spec.loader import load_spec

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine"),
]


def test_build_on_cuda_puts_every_tensor_there():
    model = netcfg.build("configs/chapter/fixed_hidden.yaml", device="cuda")
    assert all(t.device.type == "cuda" for t in [*model.parameters(), *model.buffers()])


def test_auto_picks_the_gpu():
    built = build_spec(load_spec("configs/mlp.yaml"), device="auto")
    assert built.device.type == "cuda" and "picked cuda:0" in built.device_note


def test_ties_survive_moving_to_the_gpu_and_back():
    model = netcfg.build("configs/chapter/tied_params.yaml", device="cpu").to("cuda")
    assert model.embed.weight is model.head.weight and model.head.weight.is_cuda
    model.to("cpu")
    assert model.embed.weight is model.head.weight


def test_cuda_and_cpu_models_agree():
    spec = load_spec("configs/chapter/nested.yaml")
    cpu = build_spec(spec, device="cpu", seed=1).model
    gpu = build_spec(spec, device="cuda", seed=1).model
    gpu.load_state_dict(cpu.state_dict())
    x = sample_input(spec)
    torch.testing.assert_close(gpu(x.cuda()).cpu(), cpu(x), rtol=1e-4, atol=1e-5)


def test_equal_seeds_equal_weights_on_cuda():
    a = netcfg.build("configs/mlp.yaml", device="cuda", seed=4).state_dict()
    b = netcfg.build("configs/mlp.yaml", device="cuda", seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_absent_gpu_index_is_an_error():
    from netcfg.errors import DeviceError

    with pytest.raises(DeviceError, match="not available"):
        build_spec(load_spec("configs/mlp.yaml"), device=f"cuda:{torch.cuda.device_count()}")


def test_checkpoints_move_between_gpu_and_cpu(tmp_path):
    from netcfg.actions import checkpoint

    spec = load_spec("configs/chapter/tied_params.yaml")
    on_gpu = build_spec(spec, device="cuda", seed=2)
    checkpoint.save(on_gpu, tmp_path / "gpu.safetensors")
    on_cpu = checkpoint.load(tmp_path / "gpu.safetensors", device="cpu").built.model
    assert on_cpu.embed.weight.device.type == "cpu" and on_cpu.embed.weight is on_cpu.head.weight
    torch.testing.assert_close(on_cpu.embed.weight, on_gpu.model.embed.weight.cpu(), rtol=0, atol=0)
    checkpoint.save(build_spec(spec, device="cpu", seed=3), tmp_path / "cpu.safetensors")
    back = checkpoint.load(tmp_path / "cpu.safetensors", device="cuda").built.model
    assert back.head.weight.is_cuda and back.embed.weight is back.head.weight


def test_bench_on_cuda_reports_cuda_memory():
    from netcfg.actions.bench import BenchConfig, bench

    result = bench(load_spec("configs/mlp.yaml"), BenchConfig(device="cuda", min_time=0.2, max_time=2))
    assert result.device.startswith("cuda") and result.peak_memory_bytes > 0 and result.peak_reserved_bytes
