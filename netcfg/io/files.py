"""Opening a file a user named: only regular files, and every OS problem one line.

A FIFO named as a spec or a checkpoint would block a plain open() or read() forever; a
device file would be read as if it were data. Opened non-blocking, checked with fstat,
anything but a regular file is refused before a byte is read.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from netcfg.errors import Loc, NetcfgError


def open_regular(path: str | os.PathLike, error: type[NetcfgError], what: str = "file") -> BinaryIO:
    """The open file (binary, read-only) at `path`, or `error` naming the problem."""
    name = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error("no such file", Loc(name)) from None
    except IsADirectoryError:
        raise error(f"is a directory, not a {what}", Loc(name)) from None
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror or exc}", Loc(name)) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise error(f"is a directory, not a {what}", Loc(name))
        raise error(f"not a regular file (a {_kind(mode)}), not a {what}", Loc(name))
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "pipe"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device"
