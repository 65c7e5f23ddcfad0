"""Did-you-mean suggestions (no heavy imports: used by the fast CLI paths too)."""

from __future__ import annotations

import difflib
from typing import Any


def suggest(word: Any, choices: list[str]) -> str:
    """'; did you mean X?' for the closest choice (two when they are equally close), or ''."""
    if not isinstance(word, str):
        return ""
    choices = [c for c in choices if isinstance(c, str)]  # keys a broken file made numbers
    close = difflib.get_close_matches(word, choices, n=2, cutoff=0.6)
    if not close:
        return ""
    scores = [difflib.SequenceMatcher(None, word, c).ratio() for c in close]
    if len(close) == 2 and abs(scores[0] - scores[1]) < 0.02:
        return f"; did you mean '{close[0]}' or '{close[1]}'?"
    return f"; did you mean '{close[0]}'?"
