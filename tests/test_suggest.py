"""Did-you-mean stays cheap over many choices and for many unknown words (netcfg/suggest.py)."""

from __future__ import annotations

import difflib
import time

from hypothesis import given
from hypothesis import strategies as st

from netcfg.suggest import MAX_SUGGESTED, Suggestions, close_matches, suggest

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


@given(st.text("abc", max_size=12), st.lists(st.text("abcd", max_size=30), max_size=8))
def test_close_matches_answers_as_difflib_does(word, choices):
    assert close_matches(word, choices) == difflib.get_close_matches(word, choices, n=2, cutoff=0.6)


def test_a_megabyte_word_is_not_indexed_to_be_compared_with_short_choices():
    """difflib indexes the word before looking at a choice: 8 MiB took seconds, twice per error."""
    word = "a" * 8 * 2**20
    start = time.process_time()
    assert suggest(word, ["linear", "conv2d"]) == "" and close_matches(word, ["out_features"]) == []
    assert time.process_time() - start < 0.1
    assert close_matches("a" * 10, ["a" * 16]) == ["a" * 16]  # within reach: still compared
