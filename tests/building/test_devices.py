import pytest
import torch

from netcfg.building import devices
from netcfg.errors import DeviceError, Loc


def test_auto_falls_back_to_the_cpu_and_says_so(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    device, note = devices.resolve("auto")
    assert device == torch.device("cpu") and note == "auto: no GPU found, using the CPU"


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:7", "mps"])
def test_explicit_absent_device_is_an_error_naming_what_is_present(monkeypatch, name):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    with pytest.raises(DeviceError) as err:
        devices.resolve(name, Loc("--device " + name))
    assert str(err.value).startswith(f"--device {name}: error: device '{name}' is not available")
    assert "(present: cpu)" in str(err.value)


def test_gpu_index_past_the_count(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "Test GPU")
    with pytest.raises(DeviceError, match=r"1 CUDA GPU\(s\) here \(present: cpu, cuda:0 \(Test GPU\)\)"):
        devices.resolve("cuda:1")
    assert devices.resolve("cuda:0")[0] == torch.device("cuda", 0)


def test_unknown_device_name():
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        devices.resolve("tpu")
