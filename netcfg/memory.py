"""How much memory a layer will take before it is allocated, and how much is free.

The builder adds up the parameter and buffer bytes of each layer (from its arguments and
input shape, without constructing it) and refuses to go past what the device has free,
so a spec asking for a 4 TB linear layer fails in milliseconds instead of swapping the
machine to death. The count is of float32 elements, the dtype layers are built in.
"""

from __future__ import annotations

from math import prod

import torch

from netcfg import catalog as c

BYTES_PER_ELEMENT = 4


def elements(node: c.Node, shapes: list[tuple]) -> int | None:
    """Parameter and buffer elements of one built-in layer, or None when unknown."""
    shape = shapes[0] if shapes else ()
    last = int(shape[-1]) if shape else 0
    channels = int(shape[1]) if len(shape) > 1 else 0
    if isinstance(node, c.Linear):
        return last * node.out_features + (node.out_features if node.bias else 0)
    if isinstance(node, (c.Conv1d, c.Conv2d)):
        rank = 1 if isinstance(node, c.Conv1d) else 2
        size = node.kernel_size
        kernel = size**rank if isinstance(size, int) else prod(size)
        return node.out_channels * (channels // node.groups) * kernel + (node.out_channels if node.bias else 0)
    if isinstance(node, c.Embedding):
        return node.num_embeddings * node.embedding_dim
    if isinstance(node, c.PosEmbedding):
        return node.max_len * node.dim
    if isinstance(node, c.Attention):
        heads, kv = node.heads, node.kv_heads or node.heads
        head_dim = node.head_dim or max(last // heads, 1)
        weights = last * (heads + 2 * kv) * head_dim + heads * head_dim * last
        return weights + (((heads + 2 * kv) * head_dim + last) if node.bias else 0)
    if isinstance(node, c.DenseReLU):
        return last * node.units + node.units
    if isinstance(node, c.TensorReduction):
        return last * last * node.out_features
    if isinstance(node, c.FixedMatmul):
        return last * node.out_features
    if isinstance(node, (c.BatchNorm1d, c.BatchNorm2d, c.GroupNorm)):
        return 4 * channels + 1
    if isinstance(node, (c.LayerNorm, c.RMSNorm)):
        return 2 * prod(int(s) for s in shape[-node.dims :])
    return 0 if type(node).__module__ == c.__name__ else None


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
