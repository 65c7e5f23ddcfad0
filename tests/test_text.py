"""netcfg.text: what every printed line goes through (escapes, elision, CSV cells)."""

import pytest

from netcfg.errors import Diagnostic, InputError, Loc
from netcfg.text import LONG, MAX_LINE, csv_cell, escape, one_line, quote, shorten

INVISIBLE = [
    "\x1b", "\x00", "\x7f", "\x85", "\r",  # controls
    "\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069",  # bidi embeddings
    "\u200e", "\u200f", "\u061c",  # bidi marks
    "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\U000e0041",  # zero-width, format, tags
    "\u2028", "\u2029", "\ud800", "\u3164", "\u034f", "\ufe0f",  # separators, lone surrogate, fillers
]  # fmt: skip


@pytest.mark.parametrize("char", INVISIBLE, ids=lambda c: f"U+{ord(c):04X}")
def test_invisible_and_control_characters_print_as_escapes(char):
    shown = escape(f"out{char}features")
    assert char not in shown
    assert shown == "out" + char.encode("unicode_escape").decode("ascii") + "features"
    assert shown.isascii() and shown.isprintable()


def test_visible_text_is_kept_and_newlines_only_in_one_line_mode():
    text = "héllo wörld 日本 😀 tab\there\nnext"
    assert escape(text) == text
    assert escape(text, lines=False) == text.replace("\n", "\\n")


def test_two_lookalike_names_print_differently():
    message = one_line("unknown key 'out_features\u200b'; did you mean 'out_features'?")
    assert message == "unknown key 'out_features\\u200b'; did you mean 'out_features'?"


def test_long_values_are_elided_with_their_length():
    name = "a" * 1_048_576
    assert shorten(name) == "a" * 40 + "… (1,048,576 characters)"
    assert quote(name) == "'" + "a" * 40 + "…' (1,048,576 characters)"
    assert shorten("a" * LONG) == "a" * LONG  # short enough: whole
    line = one_line(f"spec.yaml:3:15: error: unknown layer type '{name}' (see 'netcfg layers')")
    elided = "'" + "a" * 40 + "…' (1,048,576 characters)"
    assert line == f"spec.yaml:3:15: error: unknown layer type {elided} (see 'netcfg layers')"
    spaced = one_line("error: bad value '" + "x y " * 30_000 + "'")
    assert spaced.startswith("error: bad value 'x y x y") and "(120,000 characters)" in spaced


def test_an_error_line_never_passes_the_line_limit():
    line = one_line("error: " + " ".join(["\u202e" * 100] * 50))  # short words that escape long
    assert len(line) <= MAX_LINE and line.endswith("characters)")
    assert "\u202e" not in line


def test_diagnostics_are_built_safe_for_the_api_and_the_cli():
    flag = "--set name=" + "v" * 120_000
    error = InputError("value '\x1b[2J" + "w" * 10_000 + "' refused\nforged: error: line", Loc(flag, via=flag))
    text = str(error)
    assert "\n" not in text and "\x1b" not in text and len(text) < MAX_LINE
    assert text.startswith("--set name=" + "v" * 29 + "… (120,011 characters): error: value '\\x1b[2J")
    assert str(Diagnostic(None, "a\u202eb")) == "error: a\\u202eb"
    assert str(Loc("x" * 300, 3, 4)) == "x" * 40 + "… (300 characters):3:4"


@pytest.mark.parametrize("cell", ["=1+1", "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralized(cell):
    assert csv_cell(cell) == "'" + cell


def test_csv_cells_that_are_safe_are_kept():
    for cell in ["0.weight", "", "a=b", 5, -3, True]:
        assert csv_cell(cell) == cell
