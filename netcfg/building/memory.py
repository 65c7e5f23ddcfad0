"""How much memory a layer will take before it is allocated, and how much is free.

The builder adds up the parameter and buffer bytes of each layer (its declaration's
`elements` rule, from its arguments and input shape, without constructing it) and refuses to
go past what the device has free, so a spec asking for a 4 TB linear layer fails in
milliseconds instead of swapping the machine to death. The count is of float32 elements, the dtype layers are built in.
"""

from __future__ import annotations

from netcfg.io.memory import available

__all__ = ["BYTES_PER_ELEMENT", "available"]

BYTES_PER_ELEMENT = 4
