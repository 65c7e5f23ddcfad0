"""A tiny, closed expression language for ``${...}`` values in specs.

Expressions are parsed with :mod:`ast` and evaluated by walking the tree here, over a
whitelist of node types: numbers, strings, booleans, names bound by the spec (block
arguments, repeat indices, top-level vars), arithmetic, comparisons, ``and``/``or``/
``not`` (on true/false only; ``and``/``or`` short-circuit), ``a if cond else b`` and the
functions min, max, abs, int, round, ceil, floor, log2. Nothing else is reachable: no
attribute access, no subscripts, no calls to anything but those.

A layer's argument may also read the shape of the tensor reaching the layer (BUILD_NAMES:
``in_channels`` ...): such an expression is kept as text by the expansion, with the other
names it reads written in as their values (``bind_later``), and computed by the builder,
which knows the shapes (``shape_names``).
"""

from __future__ import annotations

import ast
import functools
import math
import operator
import re
from typing import Any

WHOLE = re.compile(r"^\$\{([^{}]*)\}$")
PART = re.compile(r"\$\{([^{}]*)\}")

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


def _round(x, ndigits=None):
    """Python's round: ties to even (round(2.5) == 2, as torch.round); round(x, n) keeps a float."""
    _require_numbers("round", x, ndigits)
    return round(x) if ndigits is None else round(x, ndigits)


def _numeric(name: str, fn):
    def call(x):
        _require_numbers(name, x)
        return fn(x)

    return call


def _require_numbers(name: str, *values: Any) -> None:
    """round/ceil/floor/log2 take numbers: true/false or a string is a mistake, not a 1 or a 0."""
    for value in values:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ExprError(f"{name}() takes numbers, got {_describe(value)}")


_FUNCTIONS = {
    "min": min,
    "max": max,
    "abs": abs,
    "int": int,
    "round": _round,
    "ceil": _numeric("ceil", math.ceil),
    "floor": _numeric("floor", math.floor),
    "log2": _numeric("log2", math.log2),
}
_FUNCTION_LIST = ", ".join(_FUNCTIONS)
_ARITY = {"min": (2, None), "max": (2, None), "round": (1, 2)}
"""How many arguments each function takes (default: one)."""
MAX_LENGTH = 200
MAX_INT_BITS = 1024
MAX_STRING = 10_000


class ExprError(ValueError):
    """An expression is malformed, names something unknown, or fails to compute."""


def has_expr(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def substitute(value: str, scope: dict[str, Any]) -> Any:
    """Evaluate ``${...}`` in a string: a whole-string expression keeps its type."""
    whole = WHOLE.match(value.strip())
    if whole:
        return _checked(evaluate(whole.group(1), scope))
    if "${" in PART.sub("", value):
        raise ExprError(f"malformed expression in {value[:80]!r}: '${{' without its '}}', or braces inside ${{...}}")
    return _interpolate(value, scope)


def _interpolate(value: str, scope: dict[str, Any]) -> str:
    """Each ${...} replaced by its value's text. The joined string has the cap of one piece,
    checked as the pieces are computed: "${s}${s}${s}..." stops at the piece that passes it."""
    parts: list[str] = []
    size = end = 0
    for match in PART.finditer(value):
        parts.append(value[end : match.start()])
        parts.append(str(evaluate(match.group(1), scope)))
        size += len(parts[-2]) + len(parts[-1])
        if size > MAX_STRING:
            raise ExprError(f"an interpolated string longer than {MAX_STRING:,} characters")
        end = match.end()
    parts.append(value[end:])
    if size + len(parts[-1]) > MAX_STRING:
        raise ExprError(f"an interpolated string longer than {MAX_STRING:,} characters")
    return "".join(parts)


@functools.lru_cache(maxsize=4096)
def names(value: str) -> frozenset[str]:
    """The names the ``${...}`` expressions in a string read (none for a malformed one)."""
    found: set[str] = set()
    for match in PART.finditer(value):
        if len(match.group(1)) > MAX_LENGTH:
            continue  # evaluate() refuses it
        try:
            tree = _parse(match.group(1).strip())
        except ExprError:
            continue
        found.update(n.id for n in ast.walk(tree) if isinstance(n, ast.Name))
    return frozenset(found)


def evaluate(text: str, scope: dict[str, Any]) -> Any:
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression longer than {MAX_LENGTH} characters")
    tree = _parse(text.strip())
    try:
        return _Eval(scope).visit(tree.body)
    except (ArithmeticError, TypeError, ValueError) as exc:
        if isinstance(exc, ExprError):
            raise
        raise ExprError(f"cannot compute '{text.strip()}': {exc}") from None


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> ast.Expression:
    """Parsed once per distinct text: a template's expressions repeat in every copy."""
    try:
        return ast.parse(text, mode="eval")
    except SyntaxError:
        raise ExprError(f"invalid expression '{text}'") from None


class _Eval:
    def __init__(self, scope: dict[str, Any]):
        self.scope = scope

    def visit(self, node: ast.AST) -> Any:
        method = _VISITORS.get(type(node))
        if method is None:
            raise ExprError(f"'{ast.unparse(node)}' is not allowed in an expression")
        return method(self, node)

    def visit_Constant(self, node: ast.Constant) -> Any:
        if not isinstance(node.value, (int, float, str, bool, type(None))):
            raise ExprError(f"constant {node.value!r} is not allowed")
        return node.value

    def visit_Name(self, node: ast.Name) -> Any:
        if node.id in self.scope:
            return self.scope[node.id]
        known = ", ".join(sorted(self.scope)) or "none"
        if node.id in BUILD_NAMES:
            raise ExprError(
                f"'{node.id}' is known only when building ({BUILD_NAMES[node.id]}): a layer's own numeric "
                f"arguments may read it, as a whole '${{...}}' value (names available here: {known})"
            )
        raise ExprError(f"unknown name '{node.id}' in expression (names available: {known})")

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        op = _BINARY.get(type(node.op))
        if op is None:
            raise ExprError(f"operator in '{ast.unparse(node)}' is not allowed")
        left, right = self.visit(node.left), self.visit(node.right)
        if isinstance(left, bool) or isinstance(right, bool):
            raise ExprError(f"arithmetic on true/false in '{ast.unparse(node)}': a bool is not a number")
        if op is operator.pow and isinstance(right, (int, float)) and abs(right) > 64:
            raise ExprError("exponent larger than 64")
        _check_size_before(op, left, right)
        return _checked(op(left, right))

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        op = _UNARY.get(type(node.op))
        if op is None:
            raise ExprError(f"operator in '{ast.unparse(node)}' is not allowed")
        operand = self.visit(node.operand)
        if op is operator.not_:
            _require_bool("not", operand, node)
        return op(operand)

    def visit_BoolOp(self, node: ast.BoolOp) -> Any:
        # Left to right, stopping at the first operand that decides, as Python does: a guard
        # such as `n > 0 and 12 // n == 3` must not compute its right side when n is 0.
        word, decides = ("and", False) if isinstance(node.op, ast.And) else ("or", True)
        for operand in node.values:
            value = self.visit(operand)
            _require_bool(word, value, node)
            if value is decides:
                return decides
        return not decides

    def visit_Compare(self, node: ast.Compare) -> Any:
        left = self.visit(node.left)
        for op_node, right_node in zip(node.ops, node.comparators, strict=False):
            op = _COMPARE.get(type(op_node))
            if op is None:
                raise ExprError(f"comparison in '{ast.unparse(node)}' is not allowed")
            right = self.visit(right_node)
            if not op(left, right):
                return False
            left = right
        return True

    def visit_IfExp(self, node: ast.IfExp) -> Any:
        return self.visit(node.body) if self.visit(node.test) else self.visit(node.orelse)

    def visit_Call(self, node: ast.Call) -> Any:
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS or node.keywords:
            raise ExprError(f"call '{ast.unparse(node)}' is not allowed (functions: {_FUNCTION_LIST})")
        name = node.func.id
        low, high = _ARITY.get(name, (1, 1))
        if len(node.args) < low or high is not None and len(node.args) > high:
            count = f"{low} or {high}" if high and high > low else f"{low} or more" if high is None else f"{low}"
            raise ExprError(f"{name}() takes {count} argument{'s' * (count != '1')}, got {len(node.args)} "
                            f"in '{ast.unparse(node)}'")  # fmt: skip
        return _checked(_FUNCTIONS[name](*[self.visit(a) for a in node.args]))


def _require_bool(word: str, value: Any, node: ast.AST) -> None:
    """and/or/not take true/false only: Python's truthiness would make `${2 and 3}` silently
    mean 3 (or True), and a width or a count mistaken for a condition would go unnoticed."""
    if not isinstance(value, bool):
        raise ExprError(
            f"'{word}' on {_describe(value)} in '{ast.unparse(node)}': and/or/not take true/false only"
            " (compare instead, e.g. 'x != 0')"
        )


def _describe(value: Any) -> str:
    """A value's type and (shortened) value, for messages: "an int (2)", "a string ('a')"."""
    if value is None:
        return "None"
    kind = {int: "an int", float: "a float", str: "a string"}.get(type(value), f"a {type(value).__name__}")
    text = repr(value)
    return f"{kind} ({text[:40] + '...' if len(text) > 40 else text})"


def _check_size_before(op, left: Any, right: Any) -> None:
    """Refuse an operation whose result would be huge before computing it (a power tower, a
    string repeated a billion times): evaluating a spec must stay instant."""
    ints = isinstance(left, int) and isinstance(right, int)
    if op is operator.pow and ints and right > 0 and left.bit_length() * right > MAX_INT_BITS:
        raise ExprError(f"the result of a power is larger than 2**{MAX_INT_BITS}")
    if op is operator.mod and isinstance(left, str):
        raise ExprError("'%' on a string (formatting) is not allowed")
    if op is operator.mul:
        text, times = (left, right) if isinstance(left, str) else (right, left)
        if isinstance(text, str) and isinstance(times, int) and len(text) * times > MAX_STRING:
            raise ExprError(f"a string longer than {MAX_STRING:,} characters")


def _checked(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise ExprError(f"a number larger than 2**{MAX_INT_BITS}")
    if isinstance(value, str) and len(value) > MAX_STRING:
        raise ExprError(f"a string longer than {MAX_STRING:,} characters")
    return value


# A table, not getattr: the set of evaluable node types is fixed here.
_VISITORS = {
    ast.Constant: _Eval.visit_Constant,
    ast.Name: _Eval.visit_Name,
    ast.BinOp: _Eval.visit_BinOp,
    ast.UnaryOp: _Eval.visit_UnaryOp,
    ast.BoolOp: _Eval.visit_BoolOp,
    ast.Compare: _Eval.visit_Compare,
    ast.IfExp: _Eval.visit_IfExp,
    ast.Call: _Eval.visit_Call,
}


# ---------------------------------------------------------------- names known when building

BUILD_NAMES = {
    "in_channels": "dimension 1 of the layer's input, C of [N, C, ...]",
    "in_features": "the last dimension of the layer's input",
    "in_height": "dimension 2 of a 4-D input [N, C, H, W]",
    "in_width": "dimension 3 of a 4-D input [N, C, H, W]",
}
"""Names a layer's own arguments may read: sizes of the tensor reaching the layer, known only
when the model is built (the builder computes such an argument just before building the layer)."""


def shape_names(shape: tuple[int, ...]) -> dict[str, int]:
    """The values of BUILD_NAMES for an input of this shape (those its rank defines)."""
    found = {"in_features": int(shape[-1])} if shape else {}
    if len(shape) >= 2:
        found["in_channels"] = int(shape[1])
    if len(shape) == 4:
        found.update(in_height=int(shape[2]), in_width=int(shape[3]))
    return found


def bind_later(value: str, scope: dict[str, Any]) -> str | None:
    """A whole-string expression that reads a build-time name (one of BUILD_NAMES the scope
    does not bind): the same expression with the other names it reads written in as their
    values, to be computed when building (None: it reads no build-time name; compute it now).

    `${in_channels // groups}` with groups = 2 gives `${in_channels // 2}`. A name neither in
    the scope nor a build-time name is an error now, where the expression is written."""
    whole = WHOLE.match(value.strip())
    if not whole or len(whole.group(1)) > MAX_LENGTH:
        return None
    text = whole.group(1).strip()
    tree = _parse(text)
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}  # min, max ...: not values
    read = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in called]
    if not any(n.id in BUILD_NAMES and n.id not in scope for n in read):
        return None
    data = text.encode()  # ast offsets count UTF-8 bytes
    for name in sorted(read, key=lambda n: n.col_offset, reverse=True):
        if name.id in scope:
            data = data[: name.col_offset] + _literal(name.id, scope[name.id]).encode() + data[name.end_col_offset :]
        elif name.id not in BUILD_NAMES:
            _Eval(scope).visit_Name(name)  # raises: unknown name
    bound = data.decode()
    if len(bound) > MAX_LENGTH:
        raise ExprError(f"expression '{text}' is longer than {MAX_LENGTH} characters once the values of the "
                        "names it reads are written in (it is computed when building)")  # fmt: skip
    return "${" + bound + "}"


def _literal(name: str, value: Any) -> str:
    """A value as expression text that reads back as the same value."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ExprError(f"'{name}' is {value}, which an expression computed when building cannot read")
    if isinstance(value, (bool, str, type(None))):
        return repr(value)
    if isinstance(value, (int, float)):
        return f"({value!r})" if value < 0 else repr(value)
    raise ExprError(f"'{name}' is {_describe(value)}: an expression computed when building reads numbers, "
                    "strings and true/false only")  # fmt: skip
