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
    """Counts values and characters as they are produced; past a limit, raises one SpecError
    located by `where(*args)` (called only then)."""

    def __init__(self, values: int = MAX_VALUES, text: int = MAX_TEXT):
        self.values_left = values
        self.text_left = text
        self.limits = (values, text)

    def spend(self, values: int, text: int, where: Callable[..., Loc], *args: Any) -> None:
        self.values_left -= values
        self.text_left -= text
        if self.values_left < 0 or self.text_left < 0:
            raise SpecError(self.exceeded(), where(*args))

    def exceeded(self) -> str:
        if self.values_left < 0:
            return too_many_values("the spec", self.limits[0], EXPANSION_COUNTED)
        return too_much_text("the spec", self.limits[1], EXPANSION_COUNTED)

    def spend_on(self, value: Any, where: Callable[..., Loc], *args: Any) -> None:
        """One value and everything inside it, counted as it is walked, a list or mapping at a
        time: one too large for what is left is refused before its items are looked at."""
        self.spend(1, len(value) if isinstance(value, str) else 0, where, *args)
        stack = [value] if isinstance(value, (dict, list)) else []
        while stack:
            item = stack.pop()
            if len(item) > self.values_left:
                self.spend(len(item), 0, where, *args)  # past the limit: raises
            is_dict = isinstance(item, dict)
            text = sum(len(k) for k in item if isinstance(k, str)) if is_dict else 0
            for child in item.values() if is_dict else item:
                if isinstance(child, str):
                    text += len(child)
                elif isinstance(child, (dict, list)):
                    stack.append(child)
            self.spend(2 * len(item) if is_dict else len(item), text, where, *args)
