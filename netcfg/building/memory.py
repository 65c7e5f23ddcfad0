"""How much memory a layer will take before it is allocated, and how much is free.

The builder adds up the parameter and buffer bytes of each layer (from its arguments and
input shape, without constructing it) and refuses to go past what the device has free,
so a spec asking for a 4 TB linear layer fails in milliseconds instead of swapping the
machine to death. The count is of float32 elements, the dtype layers are built in.
"""

from __future__ import annotations

from math import prod

import torch

from netcfg.catalogue import nodes as c

BYTES_PER_ELEMENT = 4


def elements(node: c.Node, shapes: list[tuple]) -> int | None:
    """Parameter and buffer elements of one built-in layer, or None when unknown."""
    count = _COUNTS.get(type(node))
    if count is not None:
        return count(node, shapes[0] if shapes else ())
    return 0 if type(node).__module__ == c.__name__ else None


def _last(shape: tuple) -> int:
    return int(shape[-1]) if shape else 0


def _channels(shape: tuple) -> int:
    return int(shape[1]) if len(shape) > 1 else 0


def _conv(node, shape: tuple) -> int:
    rank = 1 if isinstance(node, c.Conv1d) else 2
    size = node.kernel_size
    kernel = size**rank if isinstance(size, int) else prod(size)
    return node.out_channels * (_channels(shape) // node.groups) * kernel + (node.out_channels if node.bias else 0)


def _conv_transpose(node, shape: tuple) -> int:
    rank = 1 if isinstance(node, c.ConvTranspose1d) else 2
    size = node.kernel_size
    kernel = size**rank if isinstance(size, int) else prod(size)
    return _channels(shape) * (node.out_channels // node.groups) * kernel + (node.out_channels if node.bias else 0)


def _attention(node, shape: tuple) -> int:
    last = _last(shape)
    heads, kv = node.heads, node.kv_heads or node.heads
    head_dim = node.head_dim or max(last // heads, 1)
    weights = last * (heads + 2 * kv) * head_dim + heads * head_dim * last
    return weights + (((heads + 2 * kv) * head_dim + last) if node.bias else 0)


def _norm(node, shape: tuple) -> int:
    return 2 * prod(int(s) for s in shape[-node.dims :])


# Keyed by the exact args class (a dict lookup: this runs once per layer of every build).
_COUNTS = {
    c.Linear: lambda n, shape: _last(shape) * n.out_features + (n.out_features if n.bias else 0),
    c.Conv1d: _conv,
    c.Conv2d: _conv,
    c.ConvTranspose1d: _conv_transpose,
    c.ConvTranspose2d: _conv_transpose,
    c.ClassToken: lambda n, shape: _last(shape),
    c.LayerScale: lambda n, shape: int(shape[n.dim]) if len(shape) > 1 else _last(shape),
    c.Embedding: lambda n, shape: n.num_embeddings * n.embedding_dim,
    c.PosEmbedding: lambda n, shape: n.max_len * n.dim,
    c.Attention: _attention,
    c.DenseReLU: lambda n, shape: _last(shape) * n.units + n.units,
    c.TensorReduction: lambda n, shape: _last(shape) ** 2 * n.out_features,
    c.FixedMatmul: lambda n, shape: _last(shape) * n.out_features,
    c.BatchNorm1d: lambda n, shape: 4 * _channels(shape) + 1,
    c.BatchNorm2d: lambda n, shape: 4 * _channels(shape) + 1,
    c.GroupNorm: lambda n, shape: 2 * _channels(shape),
    c.LayerNorm: _norm,
    c.RMSNorm: _norm,
}


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
