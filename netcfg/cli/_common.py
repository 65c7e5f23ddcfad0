"""Options shared by commands, and the printing helpers."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

SpecArg = Annotated[Path, typer.Argument(help="Spec file (YAML).", show_default=False)]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--set", help="Override a spec value: path.to.key=value (YAML value; repeatable).", show_default=False
    ),
]
DeviceOpt = Annotated[
    Optional[str], typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps | meta (default: the spec's).")
]
SeedOpt = Annotated[
    Optional[int], typer.Option("--seed", help="Initialization seed (default: the spec's).", min=0, max=2**63 - 1)
]
PluginOpt = Annotated[
    Optional[list[str]],
    typer.Option("--plugin", help="Load a plugin (module name or .py file) that registers layers. Runs its code.",
                 show_default=False),
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


def load(spec: Path, overrides: list[str] | None, plugins: list[str] | None):
    """Load plugins the user named, then the spec."""
    from netcfg.building import plugins as plugin_loader
    from netcfg.spec.loader import load_spec

    plugin_loader.load(plugins or [])
    return load_spec(spec, overrides or [])


def out(text: str = "") -> None:
    typer.echo(printable(text))


def note(text: str) -> None:
    typer.echo(printable(text, lines=False), err=True)


# Control characters (terminal escapes among them) and lone surrogates, which names in a
# hostile file can hold: printed escaped, so output stays what it says and one line stays one.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_UNPRINTABLE_OR_NEWLINE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(text: str, lines: bool = True) -> str:
    """`text` with unprintable characters as Python escapes (newlines kept when `lines`)."""
    pattern = _UNPRINTABLE if lines else _UNPRINTABLE_OR_NEWLINE
    return pattern.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def is_tty() -> bool:
    return sys.stdout.isatty()
