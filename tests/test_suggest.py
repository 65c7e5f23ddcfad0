"""Did-you-mean stays cheap over many choices and for many unknown words (netcfg/suggest.py)."""

from __future__ import annotations

import time

from netcfg.suggest import MAX_SUGGESTED, Suggestions, suggest

PATHS = [f"blocks.{i}.attention.weight" for i in range(110_000)]


def test_a_small_set_is_searched_whole():
    assert suggest("linaer", ["linear", "conv2d", "relu"]) == "; did you mean 'linear'?"
    assert suggest(3, ["a"]) == "" and suggest("zzz", ["linear"]) == ""


def test_a_large_set_finds_a_typo_at_either_end_among_its_neighbours():
    start = time.perf_counter()
    find = Suggestions(PATHS)
    assert find("blocks.5123.atention.weight").startswith("; did you mean 'blocks.5123.attention.weight'")
    assert find("blcks.5123.attention.weight").startswith("; did you mean 'blocks.5123.attention.weight'")
    assert time.perf_counter() - start < 2


def test_at_most_a_bounded_number_of_suggestions_are_computed():
    find = Suggestions(["width", "depth"])
    answers = [find(f"widht{i}") for i in range(MAX_SUGGESTED + 5)]
    assert all(answers[:MAX_SUGGESTED]) and not any(answers[MAX_SUGGESTED:])
    assert find("widht0") == answers[0]  # a word already answered is answered again
