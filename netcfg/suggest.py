"""Did-you-mean suggestions (no heavy imports: used by the fast CLI paths too).

difflib compares a word with each choice in Python: fine for the few names of a registry or a
model's keys, quadratic when it is done for every unknown item of a long list against every key
of a large model. So: a `Suggestions` over many choices sorts them once and compares a word only
with its neighbours in that order (spelled forwards and backwards, so a typo at either end is
found), and it computes at most `MAX_SUGGESTED` suggestions; the lists that report unknown items
one per line stop at `MAX_LISTED` ("... and N more").
"""

from __future__ import annotations

import bisect
import difflib
import functools
from typing import Any

MAX_SUGGESTED = 20
"""Did-you-means one check computes at most (the first unknown names it meets)."""
MAX_LISTED = 20
"""Unknown items of one list reported one per line; the rest are counted in one more line."""
SMALL = 1_000
"""Up to this many choices, each is compared with the word (difflib's own search)."""
_NEIGHBOURS = 100
"""Choices compared on each side of the word's place in each sorted order, for a larger set."""


def suggest(word: Any, choices: list[str]) -> str:
    """'; did you mean X?' for the closest choice (two when they are equally close), or ''."""
    return Suggestions(choices)(word)


class Suggestions:
    """Did-you-mean over one set of choices for many words: at most `limit` are computed (a
    repeated word is answered from the ones computed), then it answers ''."""

    def __init__(self, choices: list[str], limit: int = MAX_SUGGESTED):
        self.choices = [c for c in choices if isinstance(c, str)]  # keys a broken file made numbers
        self.limit = limit
        self.found: dict[str, str] = {}
        self.forward: list[str] = []
        self.backward: list[str] = []
        if len(self.choices) > SMALL:
            self.forward = sorted(self.choices)
            self.backward = sorted(c[::-1] for c in self.choices)

    def __call__(self, word: Any) -> str:
        if not isinstance(word, str):
            return ""
        if word not in self.found:
            if len(self.found) >= self.limit:
                return ""
            self.found[word] = _closest(word, tuple(self.candidates(word)))
        return self.found[word]

    def candidates(self, word: str) -> list[str]:
        if not self.forward:
            return self.choices
        near = _around(self.forward, word) + [c[::-1] for c in _around(self.backward, word[::-1])]
        return list(dict.fromkeys(near))


def _around(ordered: list[str], word: str) -> list[str]:
    at = bisect.bisect_left(ordered, word)
    return ordered[max(0, at - _NEIGHBOURS) : at + _NEIGHBOURS]


def close_matches(word: str, choices, n: int = 2, cutoff: float = 0.6) -> list[str]:
    """difflib.get_close_matches, with the choices whose length alone keeps them below `cutoff`
    left out first: the same answer, but a word far longer than every choice (a megabyte key) is
    not indexed by difflib, which takes seconds, only to be compared with nothing."""
    fit = [c for c in choices if _length_ratio(word, c) >= cutoff]
    return difflib.get_close_matches(word, fit, n=n, cutoff=cutoff) if fit else []


def _length_ratio(a: str, b: str) -> float:
    """The most difflib's ratio of `a` and `b` can be (its real_quick_ratio, computed alike)."""
    total = len(a) + len(b)
    return 2.0 * min(len(a), len(b)) / total if total else 1.0


@functools.lru_cache(maxsize=1024)
def _closest(word: str, choices: tuple[str, ...]) -> str:
    """(Cached: every copy a repeat makes of a typo asks the same question.)"""
    close = close_matches(word, choices)
    if not close:
        return ""
    scores = [difflib.SequenceMatcher(None, word, c).ratio() for c in close]
    if len(close) == 2 and abs(scores[0] - scores[1]) < 0.02:
        return f"; did you mean '{close[0]}' or '{close[1]}'?"
    return f"; did you mean '{close[0]}'?"
