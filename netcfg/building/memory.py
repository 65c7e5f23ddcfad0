"""How much memory a layer will take before it is allocated, and how much is free.

The builder adds up the parameter and buffer bytes of each layer (its declaration's
`elements` rule, from its arguments and input shape, without constructing it) and refuses to
go past what the device has free, so a spec asking for a 4 TB linear layer fails in
milliseconds instead of swapping the machine to death. The count is of float32 elements, the dtype layers are built in.
"""

from __future__ import annotations

import torch

BYTES_PER_ELEMENT = 4


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
