"""Rows of tensors of a checked safetensors file or sharded index, read by byte range.

Row i of a tensor of shape [N, ...] is the byte range start + i * row_bytes .. + row_bytes of
the file holding it (safetensors stores row-major). `RowReader.rows` reads the rows asked for,
and only those, with pread into the new tensor's memory: no map of the file (a file truncated
or rewritten in place under a map kills the process with SIGBUS; a short read here is one line),
no shared file offset (worker processes forked with the descriptors read side by side). Each
file is opened when first read and checked to still have the size its header gave.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from netcfg.errors import CheckpointError, Loc
from netcfg.io.reading import torch_dtype
from netcfg.io.shards import Checkpoint

SPAN = 1 << 20
"""Rows spread over at most this many bytes are read in one call (see RowReader.rows)."""


class RowReader:
    """Reads rows of the named tensors of a checked checkpoint (see the module's docstring)."""

    def __init__(self, checkpoint: Checkpoint):
        self.checkpoint = checkpoint
        self._fds: dict[str, int] = {}
        self.bytes_read = 0
        """Bytes read so far by this process (tests: streaming never reads the whole file)."""

    def __getstate__(self) -> dict:
        # A spawned worker process opens the files again.
        return {**self.__dict__, "_fds": {}}

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def __del__(self) -> None:
        self.close()

    def rows(self, name: str, rows: Sequence[int]) -> torch.Tensor:
        """Rows `rows` of tensor `name` (any order, repeats allowed) as a new tensor [len(rows), ...]:
        consecutive rows in one call, rows within a span of SPAN bytes in one call."""
        header = self.checkpoint.header_of(name)
        info = header.tensors[name]
        out = torch.empty((len(rows), *info.shape[1:]), dtype=torch_dtype(header, info))
        size = out[0].numel() * out.element_size() if len(rows) else 0
        if not size:
            return out
        fd = self._fd(header)
        base = header.header_size + info.start
        low, high = min(rows), max(rows) + 1
        if (high - low) * size <= SPAN and high - low != len(rows):  # not one run already
            # Small rows scattered over a short span (labels): one read of the span and a
            # gather cost less than a call per row.
            span = torch.empty(((high - low) * size,), dtype=torch.uint8)
            self._read(fd, memoryview(span.numpy()), base + low * size, header.path, name)
            picked = span.view(high - low, size)[torch.tensor(rows) - low]
            out.reshape(-1).view(torch.uint8).copy_(picked.reshape(-1))
            return out
        buffer = memoryview(out.reshape(-1).view(torch.uint8).numpy())
        first = 0
        for i in range(1, len(rows) + 1):  # runs of consecutive rows: one read each
            if i == len(rows) or rows[i] != rows[i - 1] + 1:
                self._read(fd, buffer[first * size : i * size], base + rows[first] * size, header.path, name)
                first = i
        return out

    def _fd(self, header) -> int:
        fd = self._fds.get(header.path)
        if fd is not None:
            return fd
        try:
            fd = os.open(header.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise CheckpointError(f"cannot read: {exc.strerror or exc}", Loc(header.path)) from None
        if os.fstat(fd).st_size != header.size:
            os.close(fd)
            raise CheckpointError("the file changed since its header was read", Loc(header.path))
        self._fds[header.path] = fd
        return fd

    def _read(self, fd: int, buffer: memoryview, offset: int, path: str, name: str) -> None:
        done = 0
        while done < len(buffer):
            try:
                n = _pread_into(fd, buffer[done:], offset + done)
            except OSError as exc:
                raise CheckpointError(f"cannot read tensor '{name}': {exc.strerror or exc}", Loc(path)) from None
            if not n:
                raise CheckpointError(f"tensor '{name}': the file ends inside its data (changed while it was read?)",
                                      Loc(path))  # fmt: skip
            done += n
        self.bytes_read += done


def _pread_into(fd: int, buffer: memoryview, offset: int) -> int:
    if hasattr(os, "preadv"):
        return os.preadv(fd, [buffer], offset)
    data = os.pread(fd, len(buffer), offset)  # macOS before Python 3.12 has no preadv
    buffer[: len(data)] = data
    return len(data)
