"""Every file netcfg writes goes through here: checked first, then written atomically.

`check_output` refuses, before any work is done for it, an output that is a directory, anything
but a regular file (a FIFO or a device is never opened, so it never blocks), an existing file
that is not netcfg's output of the same kind (the spec given as `-o` by mistake), and a folder
that is missing or not writable. `replacing` writes a temporary file beside the target (see
netcfg.io.temporaries: marked as netcfg's, removed after a kill by the next write), fsyncs it,
renames it over the target and fsyncs the folder: readers see the old file or the whole new
one, never a part, whatever happens meanwhile (a kill, a full disk).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from netcfg.errors import InputError, Loc
from netcfg.io import temporaries
from netcfg.io.safetensors_header import looks_like_safetensors


@dataclass(frozen=True)
class Kind:
    """A kind of output: the files of that kind netcfg may replace."""

    what: str
    """'a safetensors file': what the refusal says the existing file is not."""
    recognizes: Callable[[int], bool]
    """Given a descriptor of an existing, non-empty regular file: is it this kind's?"""


def _safetensors(fd: int) -> bool:
    return looks_like_safetensors(os.pread(fd, 9, 0))


SCHEMA_LIMIT = 64 << 20
"""netcfg's schema is well under a megabyte: a larger file is not one."""


def _netcfg_schema(fd: int) -> bool:
    size = os.fstat(fd).st_size
    if size > SCHEMA_LIMIT:
        return False
    try:
        value = json.loads(_read_all(fd, size))
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict) and "$schema" in value and str(value.get("title", "")).startswith("netcfg spec")


def _shard_index(fd: int) -> bool:
    size = os.fstat(fd).st_size
    if size > SCHEMA_LIMIT:  # a 9 MB index lists 91,000 tensors
        return False
    try:
        value = json.loads(_read_all(fd, size))
    except (ValueError, RecursionError):
        return False
    return isinstance(value, dict) and isinstance(value.get("weight_map"), dict)


SAFETENSORS = Kind("a safetensors file", _safetensors)
SHARD_INDEX = Kind("a safetensors index (a JSON object with a weight_map)", _shard_index)
JSON_SCHEMA = Kind("a JSON schema written by netcfg", _netcfg_schema)


def check_output(path: str | os.PathLike, flag: str = "", kind: Kind | None = None) -> Path:
    """The file to write for `path` (a symbolic link is followed: the file it points to is
    replaced, the link stays), or InputError naming what is wrong with it."""
    where = _where(path, flag)
    target = Path(os.path.realpath(path))
    try:
        info = os.stat(target)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise InputError(f"cannot write: {exc.strerror or exc}", where) from None
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            raise InputError("is a directory", where)
        if not stat.S_ISREG(info.st_mode):
            raise InputError("not a regular file (a pipe, device or socket): netcfg writes files only", where)
        if kind is not None:
            _check_replaceable(target, kind, where)
    if not target.parent.is_dir():
        raise InputError(f"directory '{target.parent}' does not exist", where)
    if not os.access(target.parent, os.W_OK):
        raise InputError(f"cannot write there: directory '{target.parent}' is not writable", where)
    return target


def _check_replaceable(target: Path, kind: Kind, where: Loc) -> None:
    """An existing file may be replaced when it is empty or of `kind`; one that cannot be read
    to tell is refused too."""
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InputError(f"exists and cannot be read to check that it is {kind.what} ({exc.strerror}): "
                         "remove it or pick another name", where) from None  # fmt: skip
    try:
        info = os.fstat(fd)
        ours = stat.S_ISREG(info.st_mode) and (info.st_size == 0 or kind.recognizes(fd))
    except OSError:
        ours = False
    finally:
        os.close(fd)
    if not ours:
        raise InputError(f"exists and is not {kind.what} (the spec itself?): netcfg replaces only its own "
                         "kind of file; remove it or pick another name", where)  # fmt: skip


class Writer:
    """Writes all it is given to the temporary file (os.write may write less than asked)."""

    def __init__(self, fd: int):
        self.fd = fd
        self.written = 0

    def write(self, data) -> None:
        view = memoryview(data).cast("B")
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
            self.written += n


@contextlib.contextmanager
def replacing(
    target: Path, where: Loc | None = None, kind: Kind | None = None, durable: bool = True
) -> Iterator[Writer]:
    """Write `target` (a path check_output returned) atomically; the body writes to the Writer.

    A file replaced keeps its permissions (a private checkpoint stays private); a new one gets
    0666 less the umask. `kind` is checked again just before the rename, in case the file
    was changed meanwhile. OSError becomes InputError at `where` (raised as is without one).
    `durable=False` skips the fsyncs (benchmarks only)."""
    replacement = Replacement(target, where, kind, durable)
    try:
        yield Writer(replacement.temporary.fd)
    except OSError as exc:
        replacement.discard()
        raise _cannot_write(exc, where) from None
    except BaseException:
        replacement.discard()
        raise
    replacement.commit()


class Replacement:
    """`replacing` in two steps, for a file not written front to back by one writer (several
    processes writing their parts at their offsets): the temporary file, created now, is
    renamed over `target` by commit(), or removed by discard()."""

    def __init__(self, target: Path, where: Loc | None = None, kind: Kind | None = None, durable: bool = True):
        self.target, self.where, self.kind, self.durable = target, where, kind, durable
        self.mode = _mode_to_keep(target)
        temporaries.sweep(str(target.parent))
        try:
            self.temporary = temporaries.create(target)
        except OSError as exc:
            raise _cannot_write(exc, where) from None

    @property
    def path(self) -> str:
        """The temporary file, for other writers to open."""
        return self.temporary.path

    def commit(self) -> None:
        temporary = self.temporary
        try:
            os.fchmod(temporary.fd, self.mode)
            if self.durable:
                os.fsync(temporary.fd)
            os.close(temporary.fd)
            temporary.fd = -1
            if self.kind is not None and self.where is not None:
                _check_replaceable(self.target, self.kind, self.where)
            os.replace(temporary.path, self.target)
            if self.durable:
                _fsync_dir(self.target.parent)
        except OSError as exc:
            temporaries.discard(temporary)
            raise _cannot_write(exc, self.where) from None
        except BaseException:
            temporaries.discard(temporary)
            raise
        temporaries.release(temporary)

    def discard(self) -> None:
        temporaries.discard(self.temporary)


def write_file(path: str | os.PathLike, data: bytes, flag: str = "", kind: Kind | None = None) -> Path:
    """Check `path` as an output of `kind` and write `data` to it atomically."""
    target = check_output(path, flag, kind)
    with replacing(target, _where(path, flag), kind) as out:
        out.write(data)
    return target


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically (netcfg's own files, such as its cache). OSError goes to the caller."""
    with replacing(Path(os.path.realpath(path))) as out:
        out.write(text.encode("utf-8"))


def _where(path, flag: str) -> Loc:
    return Loc(f"{flag} {path}".strip())


def _cannot_write(exc: OSError, where: Loc | None) -> Exception:
    if where is None:
        return exc
    return InputError(f"cannot write: {exc.strerror or exc}", where)


def _read_all(fd: int, size: int) -> bytes:
    chunks, offset = [], 0
    while offset < size:
        chunk = os.pread(fd, min(size - offset, 1 << 24), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _mode_to_keep(target: Path) -> int:
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a folder; the file itself is on disk
    finally:
        os.close(fd)
