"""Options shared by commands, the choices they take, the flag checks, and the printing helpers.

Every option gets a metavar (KEY=VALUE, N, DEVICE ...) so `--help` reads as usage, not as
typer's internal types (`<list[str]>`, `<int range>`).
"""

from __future__ import annotations

import os
import stat
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from netcfg.errors import Diagnostic, InputError, Loc
from netcfg.numbers import parse_int, parse_real
from netcfg.text import elide_words, escape, one_line

# ---------------------------------------------------------------- choices
# Enums rather than hand-written checks: typer then lists them in --help, refuses other values
# (exit 2) and completes them in the shell. Commands pass `.value` on, so no enum leaves the CLI.


class Format(str, Enum):
    table = "table"
    json = "json"


class InspectFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


class DType(str, Enum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"
    float64 = "float64"


class Mode(str, Enum):
    inference = "inference"
    train = "train"


class Scenario(str, Enum):
    """The bench scenarios (netcfg.actions.scenarios.SCENARIOS, which imports torch)."""

    transfers = "transfers"
    logging = "logging"
    two_gpus = "two_gpus"


FormatOpt = Annotated[Format, typer.Option("--format", help="Print a table or JSON.")]
InspectFormatOpt = Annotated[
    InspectFormat,
    typer.Option("--format", help="Print tables, the whole report as JSON, or the parameter table as CSV."),
]
DTypeOpt = Annotated[Optional[DType], typer.Option("--dtype", help="Parameter dtype (default: the spec's).")]
ModeOpt = Annotated[
    Mode, typer.Option("--mode", help="Time the forward pass, or a training step (forward, backward, AdamW).")
]
ScenarioOpt = Annotated[
    Optional[Scenario], typer.Option("--scenario", help="Time one of the chapter's device lessons instead of a spec.")
]

# ---------------------------------------------------------------- paths

NAME_MAX = 255
"""Bytes in one file name (Linux and macOS)."""
PATH_MAX = 4096
"""Bytes in a whole path, its terminating NUL included (Linux)."""


def check_path(path: str | os.PathLike, where: Loc, write: bool = False) -> None:
    """Refuse a path no file can have, or one the system will not look up, with one line
    naming it, before any reader or writer sees it: a 300-byte name (ENAMETOOLONG), a NUL,
    characters the file system cannot encode, a loop of links, a folder that cannot be
    searched. A path that does not exist passes (the reader says "no such file", the writer
    creates it); an output path that exists must be a regular file (a FIFO would block)."""
    text = os.fspath(path)
    if not text:
        raise InputError("empty path", where)
    if "\0" in text:
        raise InputError("a path cannot hold a NUL character", where)
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:
        raise InputError("a path cannot hold characters the file system cannot encode", where) from None
    longest = max(len(name) for name in raw.split(b"/"))
    if longest > NAME_MAX:
        raise InputError(f"file name too long: {longest:,} bytes in one name, at most {NAME_MAX}", where)
    if len(raw) >= PATH_MAX:
        raise InputError(f"path too long: {len(raw):,} bytes, at most {PATH_MAX - 1:,}", where)
    try:
        mode = os.stat(raw).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:  # ENAMETOOLONG where names are shorter, ELOOP, EACCES ...
        raise InputError(f"cannot {'write' if write else 'read'}: {exc.strerror or exc}", where) from None
    if write and stat.S_ISDIR(mode):
        raise InputError("is a directory", where)
    if write and not stat.S_ISREG(mode):
        raise InputError("not a regular file (a pipe, device or socket): netcfg writes files only", where)


def paths(label: str = "", write: bool = False):
    """A typer callback checking the path(s) an option or argument takes (check_path), so
    every path a user names on the command line is checked where it enters. `label`: the
    flag as messages name it (an argument's errors are named by the path itself)."""

    def callback(value):
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is not None and _is_path(label, item):
                check_path(item, Loc(f"{label} {item}" if label else str(item)), write)
        return value

    return callback


def _is_path(label: str, item) -> bool:
    """--plugin takes a module name or a .py file: only the file is a path."""
    text = os.fspath(item)
    return label != "--plugin" or text.endswith(".py") or "/" in text or "\\" in text


# ---------------------------------------------------------------- options

SpecArg = Annotated[
    Path, typer.Argument(metavar="SPEC", help="Spec file (YAML).", show_default=False, callback=paths())
]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", metavar="KEY=VALUE", show_default=False,
                 help="Override a spec value, e.g. model.layers.0.out_features=128 (YAML value; repeatable)."),
]  # fmt: skip
DeviceOpt = Annotated[
    Optional[str],
    typer.Option("--device", metavar="DEVICE", help="auto | cpu | cuda | cuda:N | mps | meta (default: the spec's)."),
]


def integer(flag: str, low: int, high: int, unit: str = ""):
    """A typer `parser` for an integer option: netcfg.numbers' rules (ASCII digits, bounds),
    errors naming the flag. typer's own int() takes '٣', '1_0' and ' 3 '."""

    def parse(text):
        return text if isinstance(text, int) else parse_int(text, Loc(f"{flag} {text}"), low, high, unit)

    return parse


def real(flag: str, low: float, high: float, unit: str = ""):
    """A typer `parser` for a number option: finite (no inf, nan, 1e999) and within bounds."""

    def parse(text):
        if isinstance(text, (int, float)):
            return float(text)
        return parse_real(text, Loc(f"{flag} {text}"), low, high, unit)

    return parse


SEED_MAX = 2**63 - 1
SeedOpt = Annotated[
    Optional[int],
    typer.Option("--seed", metavar="N", help="Initialization seed (default: the spec's).",
                 parser=integer("--seed", 0, SEED_MAX)),
]  # fmt: skip
PluginOpt = Annotated[
    Optional[list[str]],
    typer.Option("--plugin", metavar="FILE|MODULE", show_default=False,
                 help="Load a plugin (.py file or module name) that registers layers; runs its code. Repeatable.",
                 callback=paths("--plugin")),
]  # fmt: skip


MemoryOpt = Annotated[
    bool,
    typer.Option("--memory-check/--no-memory-check", help="Refuse a model larger than the device's free memory."),
]


def debug_callback(ctx: typer.Context, value: bool) -> bool:
    if value:
        ctx.meta["netcfg_debug"] = True
    return value


DebugOpt = Annotated[
    bool,
    typer.Option("--debug", help="Show the Python traceback of errors.", callback=debug_callback, is_eager=True),
]


def refuse_flags(given: dict[str, bool], why: str) -> None:
    """Refuse every flag given that the chosen mode would ignore: silence would let a user
    believe it acted. One line per flag, `FLAG: error: WHY`, exit 2 (main's error boundary)."""
    refused = [flag for flag, is_given in given.items() if is_given]
    if refused:
        raise InputError([Diagnostic(Loc(flag), why) for flag in refused])


def load(spec: Path, overrides: list[str] | None, plugins: list[str] | None):
    """Load plugins the user named, then the spec."""
    from netcfg.building import plugins as plugin_loader
    from netcfg.spec.loader import load_spec

    plugin_loader.load(plugins or [])
    return load_spec(spec, overrides or [])


def out(text: str = "", data: bool = False) -> None:
    """Print to stdout, escaped; human text (not `data`: JSON, CSV) with huge words elided."""
    typer.echo(printable(text) if data else printable(elide_words(text)))


def note(text: str) -> None:
    typer.echo(one_line(text), err=True)


def printable(text: str, lines: bool = True) -> str:
    """`text` with control, bidi and zero-width characters as Python escapes (newlines kept
    when `lines`): names in a hostile file cannot drive the terminal or disguise themselves."""
    return escape(text, lines=lines)


def is_tty() -> bool:
    return sys.stdout.isatty()


def is_checkpoint(path) -> bool:
    """A safetensors file or a sharded checkpoint's index: by its name (.safetensors,
    .index.json), or by its first bytes (8-byte length, then '{')."""
    if str(path).endswith((".safetensors", ".index.json")):
        return True
    try:
        if not os.path.isfile(path):
            return False  # a pipe is never opened here (it would block); the spec reader refuses it
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    if head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05") or head[:4] == b"PK\x03\x04":
        return True  # a pickle or torch.save zip: the checkpoint reader refuses it with the reason
    from netcfg.io.safetensors_header import looks_like_safetensors

    return looks_like_safetensors(head)
