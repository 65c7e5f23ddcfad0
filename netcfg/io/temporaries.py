"""Temporary files of atomic writes, and removing those whose writer was killed: only those
netcfg can prove it made.

A write to DIR/NAME goes to DIR/.NAME.netcfg-TOKEN.tmp (TOKEN: 32 random hex digits; the file is
created with O_EXCL, so it is new), renamed over NAME once complete. Before creating it, the
writer records TOKEN in netcfg's own folder of writes in flight, as the empty file
`<cache>/inflight/KEY-TOKEN` (KEY: a hash of DIR), and holds an exclusive lock (flock) on that
entry until its temporary file is renamed or removed. The kernel drops the locks of a process
that dies, SIGKILL included, so an entry nobody holds belongs to a writer that is gone: the next
write into DIR removes the file of DIR named with that entry's TOKEN, then the entry.

A save that writes several files (a sharded checkpoint: shards, then the index that names them)
records the set before creating any of them: its entry holds the names of the new files, the
index whose atomic replacement commits them, the save's random id (in every new name, and in the
index once committed), and the files of the set the index named before. If its writer dies, the
next write into DIR finishes its work: before the commit (the index does not carry the id) the new
files are removed, after it the old set's files.

Nothing is removed for its name or its age alone. A file that matches the pattern but whose
TOKEN no entry records (a user's own, one left by another user or machine, whose cache folder
is elsewhere, or by a netcfg before this scheme) is never touched. Without a writable cache
folder the write still happens, unrecorded; if it is killed, its temporary file stays for the
user to remove.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from netcfg.io.shards import KEY_SET, MAX_INDEX

REGISTRY = "inflight"
TEMPORARY = re.compile(r"\..*\.netcfg-([0-9a-f]{32})\.tmp", re.DOTALL)
_FLAGS = os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


def cache_dir() -> Path:
    """netcfg's cache folder: $NETCFG_CACHE_DIR, else $XDG_CACHE_HOME/netcfg, else ~/.cache/netcfg."""
    base = os.environ.get("NETCFG_CACHE_DIR")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        base = str(Path(xdg) / "netcfg")
    return Path(base)


@dataclass
class Temporary:
    path: str
    """The temporary file, beside its target."""
    fd: int
    """Open for writing; -1 once closed."""
    entry: str | None
    """Its record in the registry (None: no registry could be written)."""
    lock: int
    """Descriptor holding the lock on the entry (-1: none)."""


def create(target: Path) -> Temporary:
    """Record, then create (O_EXCL, mode 0600) a temporary file beside `target`. OSError goes to the caller."""
    folder = str(target.parent)
    token, entry, lock = _register(folder)
    # Cut by bytes, so any name leaves a temporary name under the usual 255-byte limit.
    stem = os.fsdecode(os.fsencode(target.name)[:200])
    path = os.path.join(folder, f".{stem}.netcfg-{token}.tmp")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FLAGS, 0o600)
    except BaseException:
        _unregister(entry, lock)
        raise
    return Temporary(path, fd, entry, lock)


def discard(temporary: Temporary) -> None:
    """Close and remove the temporary file (if still there), then drop its entry."""
    if temporary.fd >= 0:
        with contextlib.suppress(OSError):
            os.close(temporary.fd)
        temporary.fd = -1
    with contextlib.suppress(OSError):
        os.unlink(temporary.path)
    release(temporary)


def release(temporary: Temporary) -> None:
    """Drop the entry once the temporary file is gone (renamed over its target, or removed)."""
    _unregister(temporary.entry, temporary.lock)
    temporary.entry, temporary.lock = None, -1


def sweep(folder: str) -> int:
    """Remove the temporary files in `folder` of writers that are gone; the number removed."""
    registry = cache_dir() / REGISTRY
    prefix = _key(folder) + "-"
    try:
        entries = [n for n in os.listdir(registry) if n.startswith(prefix)]
    except OSError:
        return 0
    removed = 0
    for name in entries:
        entry = str(registry / name)
        try:
            fd = os.open(entry, os.O_RDWR | os.O_NONBLOCK | _FLAGS)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_nlink:  # not removed meanwhile by another sweep
                record = _read_record(fd)
                if record is not None:  # a set of files whose writer is gone
                    removed += _finish_set(folder, record)
                else:
                    removed += _remove_temporaries(folder, name[len(prefix) :])
                os.unlink(entry)  # locked: a writer starting with this entry sees it gone and starts over
        except OSError:
            pass  # held (its writer is alive), or cannot be removed now: left for a later sweep
        finally:
            os.close(fd)
    return removed


def _remove_temporaries(folder: str, token: str) -> int:
    """Remove the file of `folder` named with `token` (one, or none: the writer was killed before
    creating it or after renaming it)."""
    removed = 0
    for name in os.listdir(folder):
        match = TEMPORARY.fullmatch(name)
        if match and match.group(1) == token:
            try:
                os.unlink(os.path.join(folder, name))
                removed += 1
            except FileNotFoundError:
                pass
    return removed


# ---------------------------------------------------------------- sets of files

MAX_RECORD = 64 << 20


@dataclass
class FileSet:
    """The record of a save writing several files, held (locked) until end_set."""

    entry: str | None
    lock: int


def begin_set(folder: str, index: str, set_id: str, new: list[str], old: list[str]) -> FileSet:
    """Record a save of `new` files (plain names in `folder`, each holding `set_id`), committed
    by replacing the file `index` with one whose metadata holds `set_id`; `old`: files of the set
    the index named before, which netcfg wrote, to remove once committed. OSError goes to the caller."""
    _, entry, lock = _register(folder)
    if entry is not None:
        record = json.dumps({"set": set_id, "index": index, "new": new, "old": old}).encode()
        try:
            _write_all(lock, record)
        except BaseException:
            _unregister(entry, lock)
            raise
    return FileSet(entry, lock)


def end_set(files: FileSet) -> None:
    """The save is over (committed and cleaned, or its new files removed): drop its record."""
    _unregister(files.entry, files.lock)
    files.entry, files.lock = None, -1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_record(fd: int) -> dict | None:
    """A set's record, or None for a temporary file's (empty) entry or one that is not a record."""
    size = os.fstat(fd).st_size
    if not 0 < size <= MAX_RECORD:
        return None
    try:
        record = json.loads(os.pread(fd, size, 0))
    except (ValueError, RecursionError):
        return None
    ok = isinstance(record, dict) and isinstance(record.get("set"), str) and isinstance(record.get("index"), str)
    return record if ok and all(isinstance(record.get(k), list) for k in ("new", "old")) else None


def _finish_set(folder: str, record: dict) -> int:
    """Undo a set that was not committed, or finish one that was: remove its new files or the old set's."""
    committed = set_of(os.path.join(folder, record["index"])) == record["set"]
    removed = 0
    for name in record["old" if committed else "new"]:
        if isinstance(name, str) and name and "/" not in name and name not in (".", ".."):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(folder, name))
                removed += 1
    return removed


def set_of(index: str) -> str | None:
    """The save id an index's metadata holds (None: no such index, or not readable as one)."""
    try:
        fd = os.open(index, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a pipe put there never blocks
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_INDEX:
            return None
        data = json.loads(os.pread(fd, info.st_size, 0))
        value = data.get("metadata", {}).get(KEY_SET) if isinstance(data, dict) else None
        return value if isinstance(value, str) else None
    except (OSError, ValueError, RecursionError, AttributeError):
        return None
    finally:
        os.close(fd)


def _key(folder: str) -> str:
    return hashlib.sha256(os.fsencode(folder)).hexdigest()[:16]


def _register(folder: str) -> tuple[str, str | None, int]:
    """A fresh token, its entry and the descriptor holding the entry's lock."""
    registry = cache_dir() / REGISTRY
    try:
        registry.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return secrets.token_hex(16), None, -1  # no registry (a read-only home): written unrecorded
    while True:
        token = secrets.token_hex(16)
        entry = str(registry / f"{_key(folder)}-{token}")
        try:
            lock = os.open(entry, os.O_RDWR | os.O_CREAT | os.O_EXCL | _FLAGS, 0o600)
        except OSError:
            return token, None, -1
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)  # held until the temporary file is gone; dropped if killed
            if os.fstat(lock).st_nlink:
                return token, entry, lock
        except BaseException:
            _unregister(entry, lock)
            raise
        os.close(lock)  # a sweep took the entry before it was locked: another token


def _unregister(entry: str | None, lock: int) -> None:
    if entry is not None:
        with contextlib.suppress(OSError):
            os.unlink(entry)  # while still locked: no sweep acts on it meanwhile
    if lock >= 0:
        with contextlib.suppress(OSError):
            os.close(lock)
