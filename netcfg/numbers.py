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


_SIZE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+) ?([A-Za-z]*)")
SIZE_UNITS = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip
"""Units of a size, any case: decimal as disks and Hugging Face count (2GB = 2*10**9 bytes), binary with an i."""
_SIZE_EXAMPLE = "a size such as 500MB, 2GB or 1GiB (B, kB, MB, GB, TB; KiB, MiB, GiB, TiB)"


def parse_size(text: str, where: Loc, low: int = 1, high: int = 2**63 - 1) -> int:
    """The number of bytes `text` spells: a number (decimals allowed) and a unit (bytes without one),
    whole bytes (rounded down) within [low, high]. `2GB` is 2,000,000,000; `1GiB` 1,073,741,824."""
    match = _SIZE.fullmatch(text) if len(text) <= MAX_DIGITS else None
    unit = (match.group(2).lower() or "b") if match else ""
    if unit not in SIZE_UNITS:
        raise InputError(f"expected {_SIZE_EXAMPLE}, got {quote(text)}", where)
    number = match.group(1)
    whole, _, fraction = number.partition(".")
    scale = SIZE_UNITS[unit]
    # Exact arithmetic: 1.1GB is 1,100,000,000 bytes, not float's 1,100,000,000.0000002.
    value = (int(whole or "0") * 10 ** len(fraction) + int(fraction or "0")) * scale // 10 ** len(fraction)
    if value < low or value > high:
        bound = f"at least {low:,}" if value < low else f"at most {high:,}"
        unit = "byte" if bound.endswith(" 1") else "bytes"
        raise InputError(f"must be {bound} {unit}, got {quote(text)} ({value:,} bytes)", where)
    return value


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
