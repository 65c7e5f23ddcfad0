"""netcfg.numbers: the one parser of numbers a user types."""

import pytest

from netcfg.errors import InputError, Loc
from netcfg.numbers import index_or_key, parse_int, parse_int_list, parse_real, parse_size

WHERE = Loc("--flag")


@pytest.mark.parametrize("text, value", [("0", 0), ("17", 17), ("-3", -3), ("+4", 4), ("007", 7)])
def test_integers_are_ascii_digits(text, value):
    assert parse_int(text, WHERE) == value


@pytest.mark.parametrize(
    "text", ["", " ", "²", "٣", "１", "1_000", " 3", "3 ", "--1", "+-1", "1.0", "1e3", "inf", "nan", "0x10", "9" * 31]
)
def test_anything_else_is_not_an_integer(text):
    with pytest.raises(InputError) as caught:
        parse_int(text, WHERE)
    assert str(caught.value).startswith("--flag: error: expected an integer, got '")


def test_integers_are_bounded():
    with pytest.raises(InputError, match=r"^--flag: error: must be between 1 and 8 threads, got '9'$"):
        parse_int("9", WHERE, 1, 8, " threads")
    with pytest.raises(InputError, match="must be at least 0, got '-1'"):
        parse_int("-1", WHERE, low=0)


@pytest.mark.parametrize("text, value", [("2", 2.0), ("0.5", 0.5), (".5", 0.5), ("5.", 5.0), ("1e-3", 0.001)])
def test_real_numbers(text, value):
    assert parse_real(text, WHERE) == value


@pytest.mark.parametrize(
    "text, message",
    [("inf", "expected a finite number"), ("-Infinity", "expected a finite number"),
     ("nan", "expected a finite number"), ("1e999", "expected a finite number"), ("٣.٥", "expected a number"),
     ("1_0", "expected a number"), ("", "expected a number"), ("0x1p3", "expected a number"),
     ("1" * 40, "expected a number")],
)  # fmt: skip
def test_real_numbers_are_finite_and_ascii(text, message):
    with pytest.raises(InputError, match=f"^--flag: error: {message}, got '"):
        parse_real(text, WHERE, 0.0, 3600.0)


def test_real_numbers_are_bounded():
    with pytest.raises(InputError, match=r"must be between 0 and 3600 seconds, got '1e300'"):
        parse_real("1e300", WHERE, 0.0, 3600.0, " seconds")


def test_integer_lists():
    assert parse_int_list("1,8, 64,", WHERE, 1, 100) == [1, 8, 64]
    bad_lists = [("", "got nothing"), (",", "got nothing"), ("1,x", "expected an integer, got 'x'"),
                 ("1,0", "must be between 1 and 100, got '0'"), (",".join(["1"] * 33), "at most 32")]  # fmt: skip
    for bad, message in bad_lists:
        with pytest.raises(InputError, match=message):
            parse_int_list(bad, WHERE, 1, 100)


@pytest.mark.parametrize(
    "part, expected", [("0", 0), ("-1", -1), ("12", 12), ("--1", "--1"), ("²", "²"), ("٣", "٣"), ("1_0", "1_0"),
                       ("+1", "+1"), ("layers", "layers"), ("9" * 19, "9" * 19)],
)  # fmt: skip
def test_set_path_components_are_indexes_only_in_ascii(part, expected):
    assert index_or_key(part) == expected


@pytest.mark.parametrize(
    "text, value",
    [("2GB", 2 * 10**9), ("500MB", 500 * 10**6), ("1GiB", 2**30), ("1gib", 2**30), ("64kB", 64_000),
     ("3KiB", 3 * 1024), ("1.5GB", 1_500_000_000), ("1.1GB", 1_100_000_000), (".5MiB", 2**19), ("7", 7),
     ("10B", 10), ("1 TB", 10**12), ("2TiB", 2 * 2**40)],
)  # fmt: skip
def test_sizes_are_decimal_or_binary_units(text, value):
    """Decimal units are powers of 10 (as Hugging Face's max_shard_size), binary ones powers of 2."""
    assert parse_size(text, WHERE) == value


@pytest.mark.parametrize("text", ["", "GB", "2XB", "2 GB ", "2  GB", "-1GB", "+1GB", "1e3GB", "٣GB", "2Gb!", "inf",
                                  "1_000MB", "2ＧＢ", "9" * 31])  # fmt: skip
def test_anything_else_is_not_a_size(text):
    with pytest.raises(InputError) as caught:
        parse_size(text, WHERE)
    assert str(caught.value).startswith("--flag: error: expected a size such as 500MB, 2GB or 1GiB (B, kB, MB, GB, "
                                        "TB; KiB, MiB, GiB, TiB), got '")  # fmt: skip


def test_sizes_are_whole_bytes_within_bounds():
    assert parse_size("1.9B", WHERE, low=0) == 1
    with pytest.raises(InputError, match=r"^--flag: error: must be at least 1 byte, got '0.5B' \(0 bytes\)$"):
        parse_size("0.5B", WHERE)
    with pytest.raises(InputError, match=r"must be at most 1,000 bytes, got '1MB' \(1,000,000 bytes\)$"):
        parse_size("1MB", WHERE, high=1000)
