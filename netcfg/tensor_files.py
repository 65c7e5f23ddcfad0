"""Writing tensor files atomically: temp file in the same directory, fsync, rename."""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import time
from pathlib import Path

from netcfg.errors import InputError, Loc


def write_tensors(
    tensors: dict, path: str | os.PathLike, metadata: dict | None = None, flag: str = "", durable: bool = True
) -> None:
    """Save a dict of tensors as safetensors without ever leaving a half-written file.

    A temporary file in the target's directory is written, flushed and fsynced, then
    renamed over the target, and the directory is fsynced: a crash at any moment leaves
    the old file or the new one. `durable=False` skips the two fsyncs (benchmarks only)."""
    from safetensors.torch import save_file

    target = check_output(path, flag)
    where = Loc(f"{flag} {path}".strip())
    _remove_stale(target)
    # A name, not a file: leaving an empty placeholder there would make the writer's own
    # rename replace a file, which on ext4 starts writeback of the whole file at once.
    tmp = str(target.parent / f".{target.name}.{secrets.token_hex(8)}.tmp")
    try:
        save_file({k: v.detach().contiguous().to("cpu") for k, v in tensors.items()}, tmp, metadata=metadata)
        os.chmod(tmp, 0o666 & ~_umask())
        if durable:
            _fsync(tmp)
        os.replace(tmp, target)
        if durable:
            _fsync_dir(target.parent)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"cannot write: {exc.strerror or exc}", where) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_output(path: str | os.PathLike, flag: str = "") -> Path:
    """Refuse an output path that cannot be written, before any work is done for it."""
    target = Path(path)
    where = Loc(f"{flag} {path}".strip())
    if target.is_dir():
        raise InputError("is a directory", where)
    if not target.parent.is_dir():
        raise InputError(f"directory '{target.parent}' does not exist", where)
    if not os.access(target.parent, os.W_OK):
        raise InputError(f"cannot write there: directory '{target.parent}' is not writable", where)
    return target


STALE_SECONDS = 600


def _remove_stale(target: Path) -> None:
    """Temporary files of earlier saves to this target that were killed mid-write (a save
    that is still running rewrites its file continuously, so it is never this old)."""
    now = time.time()
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            if now - leftover.stat().st_mtime > STALE_SECONDS:
                leftover.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
