"""FLOPs of a layer that declares no FLOP rule (a plugin, or a later use of a shared composite).

Every built-in declares its FLOP rule (netcfg/catalogue); this measures the others by running
them alone under torch.utils.flop_counter.FlopCounterMode on the meta device. It costs
seconds on first use (FlopCounterMode imports torch._dynamo), which is why built-ins count
from their shapes instead.
"""

from __future__ import annotations

import torch
from torch import nn


def counted(module: nn.Module, in_shapes: list[tuple], dtypes: list[torch.dtype]) -> int | None:
    """FLOPs of `module` measured by FlopCounterMode on meta inputs; None when its forward
    needs values (a plugin whose loop reads `.item()`: its work depends on the data)."""
    from torch.utils.flop_counter import FlopCounterMode

    xs = [torch.empty(s, dtype=d, device="meta") for s, d in zip(in_shapes, dtypes, strict=True)]
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(*xs)
    except (RuntimeError, NotImplementedError, TypeError, ValueError, IndexError):
        return None
    return int(counter.get_total_flops())
