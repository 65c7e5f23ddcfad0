"""Distributed checkpoints from and to a CUDA GPU: the DCP writer copies GPU chunks to the file a
chunk at a time (the one-process bytes), the reader fills GPU shards; a 1-process NCCL save and
load equal the one-process ones. Skipped (and reported as skipped) where there is no GPU."""

import pytest
import torch
import torch.distributed.checkpoint as dcp

from netcfg.io import dcp_storage
from netcfg.io.shards import read_checkpoint
from netcfg.io.tensor_files import write_tensors

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine"),
    pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning"),
]


def test_gpu_tensors_through_dcp_make_the_cpu_file_and_load_back(tmp_path, monkeypatch):
    g = torch.Generator().manual_seed(0)
    tensors = {"w": torch.randn(300, 70, generator=g), "h": torch.randn(33, generator=g).half(), "i": torch.arange(9)}
    write_tensors(tensors, tmp_path / "cpu.safetensors", {"format": "pt"})
    monkeypatch.setattr(dcp_storage, "CHUNK", 1000)
    on_gpu = {k: v.cuda() for k, v in tensors.items()}
    dcp.save(on_gpu, storage_writer=dcp_storage.SafetensorsWriter(tmp_path / "gpu.safetensors", {"format": "pt"}),
             no_dist=True)  # fmt: skip
    assert (tmp_path / "gpu.safetensors").read_bytes() == (tmp_path / "cpu.safetensors").read_bytes()
    into = {k: torch.zeros_like(v) for k, v in on_gpu.items()}
    reader = dcp_storage.SafetensorsReader(read_checkpoint(tmp_path / "gpu.safetensors"))
    dcp.load(into, storage_reader=reader, no_dist=True)
    assert all(into[k].is_cuda and torch.equal(into[k].cpu(), tensors[k]) for k in tensors)


def test_one_nccl_process_saves_and_loads_what_one_process_does(tmp_path, monkeypatch):
    from netcfg.actions import dist_checkpoint as dc
    from netcfg.actions import distributed as dd
    from netcfg.actions.checkpoint import load, save
    from netcfg.actions.model import build_model
    from netcfg.spec.loader import load_spec_data
    from tests.distributed.test_distributed import SMALL

    monkeypatch.setattr(dd, "START_METHOD", "forkserver")
    spec = load_spec_data({**SMALL, "seed": 3}, "small.yaml")
    dc.save(spec, tmp_path / "nccl.safetensors", 1, "fsdp", device="cuda")
    save(build_model(spec, device="cuda"), tmp_path / "one.safetensors")
    assert (tmp_path / "nccl.safetensors").read_bytes() == (tmp_path / "one.safetensors").read_bytes()
    loaded = dc.load(tmp_path / "one.safetensors", 1, "fsdp", device="cuda", check=True)
    assert loaded.checksum == load(tmp_path / "one.safetensors", device="cuda", check=True).checksum
