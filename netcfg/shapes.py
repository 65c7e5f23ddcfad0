"""Shape checks used while building, and shape formatting for messages."""

from __future__ import annotations

from collections.abc import Sequence


class ShapeError(ValueError):
    """A layer cannot take the shape it is given; the builder adds the layer's path."""


def fmt(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def check_rank(shape: Sequence[int], at_least: int, layer: str, exact: int | tuple | None = None) -> None:
    ranks = (exact,) if isinstance(exact, int) else exact
    if ranks is not None and len(shape) not in ranks:
        want = " or ".join(str(r) for r in ranks)
        raise ShapeError(f"{layer} expects an input with {want} dimensions, got {fmt(shape)}")
    if len(shape) < at_least:
        raise ShapeError(f"{layer} expects an input with at least {at_least} dimensions, got {fmt(shape)}")


def expect_size(shape: Sequence[int], dim: int, given: int | None, field: str) -> int:
    """The inferred size at `dim`; when the spec states it too, they must agree."""
    actual = int(shape[dim])
    if given is not None and given != actual:
        want = list(shape)
        want[dim] = given
        raise ShapeError(f"expected input {fmt(want)} ({field}={given}), got {fmt(shape)}")
    return actual
