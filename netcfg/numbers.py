"""The one parser of numbers a user types: flag values, `--set` path indexes, batch lists.

Python's int() and float() accept far more than a user means: other scripts' digits
(``int('٣') == 3``), underscores (``int('1_0') == 10``), surrounding spaces, ``inf`` and
``nan``, and ``1e999`` (infinite); ``str.isdigit()`` accepts ``'²'``, which int() then
refuses with a traceback. Here a number is ASCII digits with an optional sign (and, for a
real number, a decimal point and an exponent), finite and within the bounds the caller
states; anything else is one InputError naming the flag.
"""

from __future__ import annotations

import math
import re

from netcfg.errors import InputError, Loc
from netcfg.text import quote

MAX_DIGITS = 30
"""Longer numeric texts are refused before they are converted (int() of 5,000 digits raises)."""

_INT = re.compile(r"[+-]?[0-9]+")
_REAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INDEX = re.compile(r"-?[0-9]{1,18}")


def _range_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"between {low:g} and {high:g}" if isinstance(low, float) else f"between {low} and {high}"
    if low is not None:
        return f"at least {low}"
    return f"at most {high}"


def _check_bounds(value, text: str, where: Loc, low, high, unit: str) -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        raise InputError(f"must be {_range_text(low, high)}{unit}, got {quote(text)}", where)


def parse_int(text: str, where: Loc, low: int | None = None, high: int | None = None, unit: str = "") -> int:
    """The integer `text` spells (ASCII digits, optional sign), within [low, high]."""
    if not (len(text) <= MAX_DIGITS and _INT.fullmatch(text)):
        raise InputError(f"expected an integer, got {quote(text)}", where)
    value = int(text)
    _check_bounds(value, text, where, low, high, unit)
    return value


def parse_real(text: str, where: Loc, low: float | None = None, high: float | None = None, unit: str = "") -> float:
    """The finite number `text` spells (``2``, ``0.5``, ``1e-3``), within [low, high]."""
    if not (len(text) <= MAX_DIGITS and _REAL.fullmatch(text)):
        what = "a finite number" if text.strip().lower().lstrip("+-") in ("inf", "infinity", "nan") else "a number"
        raise InputError(f"expected {what}, got {quote(text)}", where)
    value = float(text)
    if not math.isfinite(value):  # 1e999
        raise InputError(f"expected a finite number, got {quote(text)}", where)
    _check_bounds(value, text, where, low, high, unit)
    return value


def parse_int_list(text: str, where: Loc, low: int | None = None, high: int | None = None, most: int = 32) -> list[int]:
    """Comma-separated integers (``1,8,64``): at least one, at most `most`."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise InputError("expected integers separated by commas, got nothing", where)
    if len(items) > most:
        raise InputError(f"at most {most} values, got {len(items):,}", where)
    return [parse_int(item, where, low, high) for item in items]


def index_or_key(part: str) -> int | str:
    """A dotted path's component: a list index (ASCII digits, optional minus) or a key."""
    return int(part) if _INDEX.fullmatch(part) else part


# ---------------------------------------------------------------- bounds the commands share

BATCH_MAX = 2**31 - 1
"""A batch size, like every size in a spec."""
MAX_SECONDS = 3600.0
"""A duration to measure (--min-time, --warmup Ns): an hour; longer is a typo."""
THREADS_PER_CORE = 4
"""CPU threads per core at most: torch.set_num_threads(100000) crashes the process."""


def max_threads() -> int:
    """The most CPU threads netcfg lets torch use here (never more than 1024)."""
    import os

    return min(1024, THREADS_PER_CORE * (os.cpu_count() or 1))
