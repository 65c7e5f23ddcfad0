"""Writing tensor files atomically: temp file in the same directory, fsync, rename."""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import stat
import time
from pathlib import Path

from netcfg.errors import CheckpointError, InputError, Loc
from netcfg.io.safetensors_header import METADATA


def write_tensors(
    tensors: dict, path: str | os.PathLike, metadata: dict | None = None, flag: str = "", durable: bool = True
) -> None:
    """Save a dict of tensors as safetensors without ever leaving a half-written file.

    A temporary file in the target's directory is written, flushed and fsynced, then
    renamed over the target, and the directory is fsynced: a crash at any moment leaves
    the old file or the new one. `durable=False` skips the two fsyncs (benchmarks only)."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    target = check_output(path, flag)
    where = Loc(f"{flag} {path}".strip())
    mode = _mode_to_keep(target)
    _remove_stale(target)
    # A name, not a file: leaving an empty placeholder there would make the writer's own
    # rename replace a file, which on ext4 starts writeback of the whole file at once.
    tmp = str(target.parent / _temp_name(target))
    try:
        save_file({k: v.detach().contiguous().to("cpu") for k, v in tensors.items()}, tmp, metadata=metadata)
        os.chmod(tmp, mode)
        if durable:
            _fsync(tmp)
        os.replace(tmp, target)
        if durable:
            _fsync_dir(target.parent)
    except (OSError, SafetensorError) as exc:
        with contextlib.suppress(OSError):
            Path(tmp).unlink(missing_ok=True)
        raise InputError(f"cannot write: {getattr(exc, 'strerror', None) or exc}", where) from None
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink(missing_ok=True)
        raise


def _temp_name(target: Path) -> str:
    # Short enough for a 255-byte file name whatever the target's (stale-file cleanup matches it).
    return f".{target.name[:200]}.{secrets.token_hex(8)}.tmp"


def _mode_to_keep(target: Path) -> int:
    """A file replaced keeps its permissions (a private checkpoint stays private); a new one
    gets the usual 0666 less the umask."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


def check_output(path: str | os.PathLike, flag: str = "") -> Path:
    """Refuse an output path that cannot be written, before any work is done for it. A
    symbolic link is followed: the file it points to is replaced, the link stays."""
    where = Loc(f"{flag} {path}".strip())
    target = Path(os.path.realpath(path))
    if target.is_dir():
        raise InputError("is a directory", where)
    if target.exists() and not target.is_file():
        raise InputError("not a regular file (a pipe, device or socket): netcfg writes files only", where)
    if target.is_file() and not _replaceable(target):
        raise InputError("exists and is not a safetensors file (the spec itself?): netcfg replaces only its own "
                         "kind of file; remove it or pick another name", where)  # fmt: skip
    if not target.parent.is_dir():
        raise InputError(f"directory '{target.parent}' does not exist", where)
    if not os.access(target.parent, os.W_OK):
        raise InputError(f"cannot write there: directory '{target.parent}' is not writable", where)
    return target


def _replaceable(target: Path) -> bool:
    """An existing file a save may replace: empty, or a safetensors file (by its first bytes)."""
    try:
        with open(target, "rb") as f:
            head = f.read(9)
    except OSError:
        return True  # unreadable: the write itself will say what is wrong
    from netcfg.io.safetensors_header import looks_like_safetensors

    return not head or looks_like_safetensors(head)


STALE_SECONDS = 600


def _remove_stale(target: Path) -> None:
    """Temporary files of earlier saves to this target that were killed mid-write (a save
    that is still running rewrites its file continuously, so it is never this old)."""
    now = time.time()
    for leftover in target.parent.glob(f".{glob.escape(target.name[:200])}.*.tmp"):
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


def save_tensors(obj, path: str | os.PathLike) -> None:
    """Save one tensor, a list of tensors, or a dict of str -> tensor as safetensors.

    The file is plain safetensors (readable by safetensors.torch.load_file); its metadata
    records which of the three it was, so load_tensors returns the same structure."""
    import torch  # here: the writer itself needs only safetensors

    if isinstance(obj, torch.Tensor):
        tensors, kind = {"tensor": obj}, "tensor"
    elif isinstance(obj, (list, tuple)) and all(isinstance(t, torch.Tensor) for t in obj):
        tensors, kind = {str(i): t for i, t in enumerate(obj)}, "list"
    elif isinstance(obj, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        if METADATA in obj:
            raise CheckpointError(f"a tensor may not be named '{METADATA}' (reserved by safetensors)", Loc(str(path)))
        tensors, kind = dict(obj), "dict"
    else:
        raise CheckpointError("save_tensors takes a tensor, a list of tensors, or a dict of str -> tensor",
                              Loc(str(path)))  # fmt: skip
    write_tensors(_unshare(tensors), path, metadata={"netcfg.tensors": kind})


def _unshare(tensors: dict) -> dict:
    """safetensors refuses tensors that share memory; copies make each one its own."""
    seen: set = set()
    out = {}
    for name, t in tensors.items():
        # safetensors refuses any two tensors on one storage, overlapping or not.
        key = t.untyped_storage().data_ptr() if t.device.type != "meta" else id(t)
        out[name] = t.clone() if key in seen else t
        seen.add(key)
    return out
