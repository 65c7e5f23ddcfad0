"""The sample input's integer range is drawn exactly: bounds stay integers (never through a
float), and an int64 `high` of 2**63 draws ids up to 2**63-1."""

import re

import pytest
import torch

from netcfg.building.builder import sample_input
from netcfg.errors import SpecError
from netcfg.spec.loader import load_spec

TOP = 2**63


def _spec(write_spec, low, high, dtype="int64", shape=(64, 64)):
    head = f"input: {{shape: {list(shape)}, dtype: {dtype}, low: {low}, high: {high}}}"
    text = f"netcfg: 1\n{head}\nmodel: {{type: identity}}\n"
    return load_spec(write_spec(text))


def test_integer_bounds_stay_exact_integers(write_spec):
    spec = _spec(write_spec, 0, 2**53 + 1)
    assert spec.head.input.high == 2**53 + 1 and isinstance(spec.head.input.high, int)  # a float would be 2**53


def test_high_of_two_to_the_63_draws_the_largest_ids(write_spec):
    x = sample_input(_spec(write_spec, TOP - 2, TOP))
    assert x.dtype == torch.int64 and set(x.unique().tolist()) == {TOP - 2, TOP - 1}


def test_the_whole_int64_range_is_drawn(write_spec):
    x = sample_input(_spec(write_spec, -TOP, TOP))
    assert x.min() < -(2**62) and x.max() > 2**62 and x.unique().numel() == x.numel()


def test_a_range_at_the_bottom_of_int64(write_spec):
    x = sample_input(_spec(write_spec, -TOP, -TOP + 2))
    assert set(x.unique().tolist()) == {-TOP, -TOP + 1}


def test_ordinary_ranges_draw_what_they_always_drew(write_spec):
    spec = _spec(write_spec, 3, 1000, shape=(2, 12))
    expected = torch.randint(3, 1000, (2, 12), generator=torch.Generator().manual_seed(0))
    assert torch.equal(sample_input(spec), expected)
    int32 = sample_input(_spec(write_spec, -(2**31), 2**31, dtype="int32"))
    assert int32.dtype == torch.int32 and int32.min() < -(2**30) and int32.max() > 2**30


@pytest.mark.parametrize(
    "low, high, message",
    [(0, TOP + 1, "must lie within int64's range"), (-TOP - 1, 0, "must lie within int64's range"),
     (0, "9.3e18", "a float past 2**53 that may not be the integer meant"),
     (0, "1.5", "must be whole numbers"), (0, 1.0, None)],
)  # fmt: skip
def test_bounds_a_draw_cannot_take_exactly_are_refused_at_the_spec(write_spec, low, high, message):
    if message is None:
        assert _spec(write_spec, low, high).head.input.high == 1  # a whole float below 2**53: its integer
        return
    with pytest.raises(SpecError, match=re.escape(message)) as caught:
        _spec(write_spec, low, high)
    assert ":2:8: error: 'input': " in str(caught.value)
