"""Tensor files from and to a CUDA GPU: written a chunk at a time, read after a check of the GPU's
free memory. Skipped (and reported as skipped) where there is no GPU."""

import pytest
import torch
from safetensors.torch import load_file

from netcfg.errors import CheckpointError
from netcfg.io import memory, tensor_files
from netcfg.io.reading import read_tensors
from netcfg.io.safetensors_header import read_header
from netcfg.io.tensor_files import write_tensors

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine"),
]


def test_gpu_tensors_are_written_a_chunk_at_a_time_with_the_same_bytes(tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(0)
    tensors = {"w": torch.randn(300, 70, generator=g), "h": torch.randn(33, generator=g).half(), "i": torch.arange(9)}
    write_tensors(tensors, tmp_path / "cpu.safetensors")
    monkeypatch.setattr(tensor_files, "CHUNK", 1000)
    write_tensors({k: v.cuda() for k, v in tensors.items()}, tmp_path / "gpu.safetensors")
    assert (tmp_path / "gpu.safetensors").read_bytes() == (tmp_path / "cpu.safetensors").read_bytes()
    back = read_tensors(read_header(tmp_path / "gpu.safetensors"), torch.device("cuda"))
    assert all(back[k].is_cuda and torch.equal(back[k].cpu(), tensors[k]) for k in tensors)
    assert all(torch.equal(v, tensors[k]) for k, v in load_file(tmp_path / "gpu.safetensors").items())


def test_tensors_past_the_gpus_free_memory_are_refused_before_reading(tmp_path, monkeypatch):
    write_tensors({"a": torch.zeros(1000), "b": torch.zeros(1000)}, tmp_path / "t.safetensors")
    real = memory.available
    monkeypatch.setattr(memory, "available", lambda d: 6000 if d.type == "cuda" else real(d))
    with pytest.raises(CheckpointError, match="its 2 tensors to read need 8,000 bytes .* free on cuda"):
        read_tensors(read_header(tmp_path / "t.safetensors"), torch.device("cuda"))


def test_a_model_moved_to_the_gpu_saves_the_bytes_of_the_cpu_model_and_loads_anywhere(tmp_path):
    """Issue 13: another device needs nothing recorded; the values are the same, load places them."""
    import netcfg
    from tests.conftest import CONFIGS

    model = netcfg.build(CONFIGS / "mlp.yaml", device="cpu", seed=3)
    netcfg.save(model, tmp_path / "cpu.safetensors")
    netcfg.save(model.to("cuda"), tmp_path / "gpu.safetensors")
    assert (tmp_path / "gpu.safetensors").read_bytes() == (tmp_path / "cpu.safetensors").read_bytes()
    index = tmp_path / "m.safetensors.index.json"
    netcfg.save(model, index, max_shard_size=11_000)
    for device in ("cpu", "cuda"):
        loaded = netcfg.load(index, device=device)
        assert all(p.device.type == device for p in loaded.parameters())
        assert all(torch.equal(a.cpu(), b.cpu()) for a, b in zip(loaded.state_dict().values(),
                                                                 model.state_dict().values(), strict=True))  # fmt: skip
    target = netcfg.build(CONFIGS / "mlp.yaml", device="cuda", seed=9)
    netcfg.load_into(target, index)  # read on the CPU, copied into the GPU's tensors
    assert torch.equal(target[0].weight, model[0].weight)
