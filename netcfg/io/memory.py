"""How much memory is free, and refusing to read tensors that would not fit.

A file's header says how large its tensors are before a byte of them is read; a file
claiming a 180 GB tensor (a sparse file costs nothing to make) is refused with the size
and the free memory instead of dying in torch.empty or being killed by the OOM killer.
"""

from __future__ import annotations

import torch

from netcfg.errors import CheckpointError, Loc


def available(device: torch.device) -> int | None:
    """Bytes free on the device now, or None when it cannot be known (then nothing is refused)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        return _mem_available()
    return None


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_fits(infos: list, device: torch.device, where: Loc) -> None:
    """Refuse, before anything is allocated, tensors (header entries) that do not fit in free memory.

    Each tensor is read into CPU memory, one at a time, then moved to `device`: the largest
    must fit in the CPU's free memory, all of them together in the device's."""
    if not infos:
        return
    staging = torch.device("cpu")
    target = staging if device.type == "meta" else device
    largest = max(infos, key=lambda t: t.nbytes)
    one = f"tensor '{largest.name}' {largest.dtype} {list(largest.shape)} needs"
    _refuse_past(largest.nbytes, staging, one, where)
    if len(infos) > 1 or target != staging:
        every = f"its {len(infos)} tensors to read need" if len(infos) > 1 else one
        _refuse_past(sum(t.nbytes for t in infos), target, every, where)


def _refuse_past(need: int, device: torch.device, subject: str, where: Loc) -> None:
    free = available(device) if need else None
    if free is not None and need > free:
        raise CheckpointError(f"{subject} {amount(need)}, more than the {amount(free)} free on {device}", where)


def amount(n: int) -> str:
    """180000000000 -> '180,000,000,000 bytes (167.6 GiB)'."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            break
        size /= 1024
    return f"{n:,} bytes" if unit == "B" else f"{n:,} bytes ({size:.1f} {unit})"
