"""Device and dtype resolution: `auto` falls back to the CPU and says so; an explicit
device that is absent is an error naming what is present, never a silent fallback."""

from __future__ import annotations

import re

import torch

from netcfg.errors import DeviceError, Loc

DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
    "int64": torch.int64,
    "int32": torch.int32,
}


def dtype_name(dtype: torch.dtype) -> str:
    """torch.float32 -> 'float32', the spelling specs use."""
    return str(dtype).replace("torch.", "")


# Every dtype a layer's declaration may name for its output, by name.
BY_NAME = {
    dtype_name(d): d
    for d in (
        torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex32, torch.complex64,
        torch.complex128, torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
    )
}  # fmt: skip


def present() -> str:
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return ", ".join(names)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve(name: str, where: Loc | None = None) -> tuple[torch.device, str]:
    """Return the device and a note saying how it was chosen."""
    name = name.strip()
    if name == "auto":
        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            return torch.device("cuda:0"), f"auto: picked cuda:0 ({torch.cuda.get_device_name(0)})"
        if _mps_available():
            return torch.device("mps"), "auto: picked mps"
        return torch.device("cpu"), "auto: no GPU found, using the CPU"
    if name in ("cpu", "meta"):
        return torch.device(name), name
    if name == "mps":
        if not _mps_available():
            raise DeviceError(f"device 'mps' is not available here (present: {present()})", where)
        return torch.device("mps"), name
    match = re.fullmatch(r"cuda(?::([0-9]{1,9}))?", name)  # ASCII digits (\d takes '٣'), an int() that cannot fail
    if match is None:
        raise DeviceError(f"unknown device '{name}' (use auto, cpu, cuda, cuda:N, mps or meta)", where)
    return _cuda(int(match.group(1) or 0), name, where), name


def _cuda(index: int, name: str, where: Loc | None) -> torch.device:
    if not torch.cuda.is_available():
        raise DeviceError(f"device '{name}' is not available: no CUDA GPU here (present: {present()})", where)
    count = torch.cuda.device_count()
    if index >= count:
        raise DeviceError(f"device '{name}' is not available: {count} CUDA GPU(s) here (present: {present()})", where)
    return torch.device("cuda", index)
