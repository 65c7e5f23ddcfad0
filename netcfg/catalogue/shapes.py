"""Shape checks the layer declarations use, and shape formatting for messages. No torch."""

from __future__ import annotations

from collections.abc import Sequence


class ShapeError(ValueError):
    """A layer cannot take the shape it is given; the builder adds the layer's path.

    `key` names the argument at fault, so the error points at it in the spec."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


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
        raise ShapeError(f"expected input {fmt(want)} ({field}={given}), got {fmt(shape)}", key=field)
    return actual


def _tuple(value: int | Sequence[int], rank: int) -> tuple[int, ...]:
    return (value,) * rank if isinstance(value, int) else tuple(value)


def window_out(
    shape: Sequence[int], rank: int, kernel, stride, padding, dilation=1, ceil_mode: bool = False
) -> tuple[int, ...]:
    """Spatial output sizes of a convolution or pooling window over the last `rank` dims
    (ceil_mode: pooling's rounding up, keeping a last window that starts inside the input)."""
    sizes = [int(s) for s in shape[-rank:]]
    k, s, d = _tuple(kernel, rank), _tuple(stride, rank), _tuple(dilation, rank)
    if padding == "same":
        return tuple(sizes)
    p = (0,) * rank if padding == "valid" else _tuple(padding, rank)
    if any(len(t) != rank for t in (k, s, d, p)):
        raise ShapeError(f"kernel_size, stride, padding and dilation need {rank} values each", key="kernel_size")
    out = tuple(
        _window_count(n, ki, si, pi, di, ceil_mode) for n, ki, si, pi, di in zip(sizes, k, s, p, d, strict=True)
    )
    if any(o < 1 for o in out):
        raise ShapeError(
            f"window {list(k)} (dilation {list(d)}, padding {list(p)}) does not fit input {fmt(shape)}",
            key="kernel_size",
        )
    return out


def _window_count(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    span = n + 2 * p - d * (k - 1) - 1
    if not ceil_mode:
        return span // s + 1
    out = -(-span // s) + 1
    return out - 1 if (out - 1) * s >= n + p else out  # the last window must start inside the input


def transposed_out(shape: Sequence[int], rank: int, kernel, stride, padding, output_padding, dilation) -> tuple:
    """Spatial output sizes of a transposed convolution over the last `rank` dims."""
    sizes = [int(s) for s in shape[-rank:]]
    k, s, p = _tuple(kernel, rank), _tuple(stride, rank), _tuple(padding, rank)
    op, d = _tuple(output_padding, rank), _tuple(dilation, rank)
    if any(len(t) != rank for t in (k, s, p, op, d)):
        raise ShapeError(f"kernel_size, stride, padding, output_padding and dilation need {rank} values each",
                         key="kernel_size")  # fmt: skip
    if any(o >= max(si, di) for o, si, di in zip(op, s, d, strict=True)):
        raise ShapeError("output_padding must be smaller than stride or dilation", key="output_padding")
    parts = zip(sizes, k, s, p, op, d, strict=True)
    out = tuple((n - 1) * si - 2 * pi + di * (ki - 1) + oi + 1 for n, ki, si, pi, oi, di in parts)
    if any(o < 1 for o in out):
        raise ShapeError(f"padding {list(p)} leaves no output for input {fmt(shape)}", key="padding")
    return out


def broadcast(*shapes: Sequence[int]) -> tuple[int, ...]:
    """NumPy broadcasting of shapes (torch.broadcast_shapes imports sympy: seconds on first use)."""
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        sizes = {int(s[len(s) - rank + i]) for s in shapes if len(s) - rank + i >= 0} - {1}
        if len(sizes) > 1:
            raise ShapeError(f"shapes {', '.join(fmt(s) for s in shapes)} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)
