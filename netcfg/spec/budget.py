"""The budgets of a spec: how much it may hold and expand to, counted before the work is done.

A spec is short text that can describe a lot: an alias repeats a node, `repeat` copies a body,
`${...}` builds strings, block arguments are copied into every use. Each budget is counted while
the values are produced (by the YAML parser's events, then by the expansion), never after a
whole document or model is built, and stops the work with one located error naming the limit.
A spec embedded in a checkpoint (JSON) gets the same limits as a file.

Every shipped config stays far below them (the largest, llama2-70b, expands to 4,363 values
and 20 KB of text; a model at the 100,000-module-node cap to about 500,000 values).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from netcfg.errors import Loc, SpecError

MAX_FILE_BYTES = 10 * 2**20
"""Bytes of a spec's text: a file, or the JSON a checkpoint embeds."""
MAX_DEPTH = 100
"""Nesting of the document (mappings and lists)."""
MAX_DOCUMENT_VALUES = 200_000
"""Values of the document as read, aliases expanded (keys count as values)."""
MAX_VALUES = 1_000_000
"""Values the expansion produces: repeats, blocks, interpolation (keys count as values)."""
MAX_TEXT = 64 * 2**20
"""Characters of text (strings and keys), of the document with its aliases expanded, and of the expansion."""

DOCUMENT_COUNTED = "aliases counted"
EXPANSION_COUNTED = "aliases, repeats and interpolation counted"


def too_many_values(what: str, limit: int, counted: str) -> str:
    return f"{what} expands to more than {limit:,} values ({counted})"


def too_much_text(what: str, limit: int, counted: str) -> str:
    return f"{what} expands to more than {limit // 2**20} MiB of text ({counted})"


class Budget:
    """Counts values and characters as they are produced; past a limit, raises one SpecError.

    `where` is called only when a limit is passed (the location of the value being produced)."""

    def __init__(self, values: int = MAX_VALUES, text: int = MAX_TEXT, what: str = "the spec",
                 counted: str = EXPANSION_COUNTED):  # fmt: skip
        self.values_left = values
        self.text_left = text
        self.limits = (values, text)
        self.what = what
        self.counted = counted

    def spend(self, values: int, text: int, where: Callable[[], Loc]) -> None:
        self.values_left -= values
        self.text_left -= text
        if self.values_left < 0:
            raise SpecError(too_many_values(self.what, self.limits[0], self.counted), where())
        if self.text_left < 0:
            raise SpecError(too_much_text(self.what, self.limits[1], self.counted), where())

    def spend_on(self, value: Any, where: Callable[[], Loc]) -> None:
        """One value and everything inside it, counted as it is walked: a list or mapping too
        large for what is left is refused before its items are looked at."""
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, (dict, list)):
                if len(item) > self.values_left:
                    self.spend(1 + len(item), 0, where)  # past the limit: raises
                keys = sum(len(k) for k in item if isinstance(k, str)) if isinstance(item, dict) else 0
                self.spend(1 + (len(item) if isinstance(item, dict) else 0), keys, where)
                stack.extend(item.values() if isinstance(item, dict) else item)
            else:
                self.spend(1, len(item) if isinstance(item, str) else 0, where)
