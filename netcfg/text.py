"""Text from a user or a file made safe to print: one function for every place that prints.

A name in a hostile file or a flag can hold a terminal escape (``\\x1b[2J``), a newline that
forges a second error line, a bidi override (U+202E) that prints ``'evil'`` as ``'live'``, or a
zero-width space that makes ``out_features`` and ``out\u200bfeatures`` look the same. All of
them are printed as Python escapes (``\\x1b``, ``\\u202e``, ``\\u200b``). A value of a megabyte
(a name, a ``--set`` value) is shown by its first characters and its length, so one error
stays one readable line. No imports beyond the standard library: every layer may use it.
"""

from __future__ import annotations

import re
import unicodedata

LONG = 256
"""A value (a quoted name, a path, a flag's text) longer than this is elided."""
SHOWN = 40
"""Characters of an elided value that are kept."""
MAX_LINE = 400
"""A printed error or warning line is cut past this many characters (after eliding values)."""

# Categories printed escaped: controls, format characters (bidi marks and overrides, zero-width
# spaces and joiners, the BOM, soft hyphen, tags), lone surrogates, line and paragraph separators.
_ESCAPED = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Letters and marks that render as nothing (Hangul fillers, the grapheme joiner, variation selectors).
_INVISIBLE = frozenset(
    [0x034F, 0x115F, 0x1160, 0x3164, 0xFFA0, *range(0x180B, 0x1810), *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)]
)
# Anything but printable ASCII is a candidate (checked one by one: ASCII text costs one scan).
_CANDIDATE = re.compile(r"[^\x20-\x7e\t\n]")
_CANDIDATE_OR_NEWLINE = re.compile(r"[^\x20-\x7e\t]")
_QUOTED = re.compile(rf"'([^'\n]{{{LONG + 1},}})'|\"([^\"\n]{{{LONG + 1},}})\"")
_LONG_WORD = re.compile(rf"\S{{{LONG + 1},}}")


def _escape_one(match: re.Match) -> str:
    char = match.group()
    if char == "\n" or unicodedata.category(char) in _ESCAPED or ord(char) in _INVISIBLE:
        return char.encode("unicode_escape").decode("ascii")
    return char


def escape(text: str, lines: bool = True) -> str:
    """`text` with control, bidi, zero-width and other invisible characters as Python escapes
    (``\\x1b``, ``\\u202e``); newlines kept when `lines`, escaped otherwise."""
    return (_CANDIDATE if lines else _CANDIDATE_OR_NEWLINE).sub(_escape_one, text)


def shorten(value: str, limit: int = LONG) -> str:
    """`value`, or its first characters and its length when longer than `limit`."""
    if len(value) <= limit:
        return value
    return f"{value[:SHOWN]}… ({len(value):,} characters)"


def quote(value: object) -> str:
    """`'value'` for a message: escaped, and elided with its length when long."""
    text = str(value)
    if len(text) > LONG:
        return f"'{escape(text[:SHOWN], lines=False)}…' ({len(text):,} characters)"
    return f"'{escape(text, lines=False)}'"


def _elide_quoted(match: re.Match) -> str:
    mark = "'" if match.group(1) is not None else '"'
    inner = match.group(1) if match.group(1) is not None else match.group(2)
    return f"{mark}{inner[:SHOWN]}…{mark} ({len(inner):,} characters)"


def elide_words(text: str) -> str:
    """`text` with each word (a run without spaces: a path, a name) longer than LONG elided."""
    return _LONG_WORD.sub(lambda m: shorten(m.group()), text) if len(text) > LONG else text


def one_line(text: str) -> str:
    """`text` safe to print as one line of an error or a warning: long quoted values and long
    words (paths, `--set` texts) elided with their length, invisible characters and newlines
    escaped, and the line cut at MAX_LINE characters."""
    if len(text) > LONG:
        text = elide_words(_QUOTED.sub(_elide_quoted, text))
    text = escape(text, lines=False)
    if len(text) > MAX_LINE:
        text = f"{text[: MAX_LINE - 40]}… ({len(text):,} characters)"
    return text


def csv_cell(value: object) -> object:
    """A CSV cell that a spreadsheet will not run: text beginning with ``= + - @``, a tab or a
    carriage return is prefixed with a single quote (OWASP's advice against CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def human_bytes(n: int) -> str:
    """Bytes as netcfg prints them: 512 B, 1.5 GiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def units_text(units: int) -> str:
    """'1 unit + the root', '12 units + the root': FSDP's units as the commands print them."""
    return f"{units} unit{'' if units == 1 else 's'} + the root"
