"""One exception hierarchy for every problem a user can cause.

Each error carries one or more diagnostics; a diagnostic says where (a place in a
file, or the command-line flag that caused it) and what. The CLI prints each one as
``where: error: message`` and exits with code 2. A diagnostic's text is safe to print
(netcfg.text.one_line): the API's exceptions and the CLI's lines read the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from netcfg.text import one_line, shorten


@dataclass(frozen=True)
class Loc:
    """A place in a file (1-based line and column) or a command-line flag."""

    file: str
    line: int = 0
    col: int = 0
    via: str = ""
    """The command-line flag a value here was computed from (an expression reading a var
    that `--set vars.NAME=...` replaced), so the message names the flag as well."""

    def __str__(self) -> str:
        name = shorten(self.file)  # a 1 MB path or --set text: its start and its length
        if self.line <= 0:
            return name
        return f"{name}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    loc: Loc | None
    message: str

    def __str__(self) -> str:
        """One line, safe to print: invisible characters escaped, long values elided."""
        if self.loc is None:
            return one_line(f"error: {self.message}")
        via = f" (from {shorten(self.loc.via)})" if self.loc.via else ""
        return one_line(f"{self.loc}: error: {self.message}{via}")


class NetcfgError(Exception):
    """Base of every error a user can cause; holds all the problems found at once."""

    def __init__(self, diagnostics: list[Diagnostic] | str, loc: Loc | None = None):
        if isinstance(diagnostics, str):
            diagnostics = [Diagnostic(loc, diagnostics)]
        self.diagnostics = _unique(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))

    def __reduce__(self):
        # Pickled whole (diagnostics with their locations), as torch.distributed sends a rank's error to the others.
        return type(self), (self.diagnostics,)


def _unique(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    # A block template instantiated many times yields the same problem many times.
    seen: dict[Diagnostic, None] = {}
    for d in diagnostics:
        seen.setdefault(d, None)
    return list(seen)


class SpecError(NetcfgError):
    """The YAML text or the spec it describes is invalid."""


class BuildError(NetcfgError):
    """The spec is valid but the network cannot be built (shapes, ties, devices)."""

    partial = None
    """The builder's records up to the failure (set by the builder), so a report can show them."""


class DeviceError(NetcfgError):
    """A requested device or dtype is not available here."""


class CheckpointError(NetcfgError):
    """A checkpoint or tensor file is unreadable, corrupt, or does not fit the model."""


class InputError(NetcfgError):
    """A file or flag given on the command line cannot be used."""


class PluginError(NetcfgError):
    """A plugin named by the user could not be loaded or registers something invalid."""


class TrainError(NetcfgError):
    """A training run cannot go on: its data does not fit the model, its loss turned NaN, or its
    checkpoints belong to another run."""
