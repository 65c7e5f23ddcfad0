"""How much a raw node expands to, estimated from its text before anything is expanded.

`repeat` multiplies its body; a block call adds its template's body (each template is walked
once, with the vars as its scope); a `times` that is an expression is evaluated when the names
it reads are known, else counted once; a node that an `if` removes still counts. Values are
counted as the expansion counts them (a mapping: itself and its keys; a list; a scalar), text
as the characters of strings and keys. The walk is linear in the text.

The expansion compares these figures with its budgets before doing the work, and still counts
exactly as it goes: an estimate can be low (an expression's value is unknown until computed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netcfg.catalogue import composite
from netcfg.spec.expr import WHOLE, ExprError, has_expr, substitute
from netcfg.spec.yaml_source import Path

MAX_TIMES = next(m.le for m in composite.Repeat.model_fields["times"].metadata if hasattr(m, "le"))
_DEEPEST = 300  # nesting (templates in templates included) past which a walk stops counting


@dataclass(frozen=True)
class Size:
    nodes: int = 0
    values: int = 0
    text: int = 0

    def __add__(self, other: Size) -> Size:
        return Size(self.nodes + other.nodes, self.values + other.values, self.text + other.text)

    def __mul__(self, times: int) -> Size:
        return Size(self.nodes * times, self.values * times, self.text * times)


@dataclass(frozen=True)
class Copies:
    """A repeat whose copies alone pass a limit: where its `times` is, and the sizes."""

    src: Path
    times: int
    body: Size


class Estimator:
    def __init__(self, blocks: dict, variables: dict, limits: Size):
        self.blocks = blocks
        self.variables = variables
        self.limits = limits
        self.templates: dict[str, Size] = {}
        self.active: set[str] = set()
        self.arguments: dict[int, tuple[Any, Size]] = {}
        """id -> (value, its size) of the lists and mappings `${name}` named: each walked once."""
        self.copies: Copies | None = None
        """The first repeat found (innermost first) whose copies alone pass a limit."""

    def size(self, raw: Any, src: Path, scope: dict, depth: int = 0) -> Size:
        if depth > _DEEPEST:
            return Size(1, 1, 0)
        if isinstance(raw, list):
            nodes, values, text = 0, 1, 0
            for i, item in enumerate(raw):
                if isinstance(item, (dict, list)) or has_expr(item):
                    inner = self.size(item, src + (i,), scope, depth + 1)
                    nodes, values, text = nodes + inner.nodes, values + inner.values, text + inner.text
                else:  # a plain scalar (most items of a long list): no call
                    values += 1
                    text += len(item) if isinstance(item, str) else 0
            return Size(nodes, values, text)
        if has_expr(raw):
            return self.expression(raw, src, scope, depth)
        if not isinstance(raw, dict):
            return Size(0, 1, len(raw) if isinstance(raw, str) else 0)
        kind = raw.get("type")
        total = Size(int("type" in raw), 1 + len(raw), sum(len(k) for k in raw if isinstance(k, str)))
        for key, value in raw.items():
            if not (kind == "repeat" and key == "body"):
                total += self.size(value, src + (key,), scope, depth + 1)
        if kind == "repeat":
            times = self.times(raw.get("times"), scope)
            body = self.size(raw.get("body"), src + ("body",), scope, depth + 1)
            total += body * times
            self.check(body, times, src)
        elif kind == "block" and isinstance(raw.get("block"), str):
            total += self.template(raw["block"], depth)
        return total

    def expression(self, raw: str, src: Path, scope: dict, depth: int) -> Size:
        """`${name}` naming a list or mapping (a block argument): its size; any other: the text's."""
        whole = WHOLE.match(raw.strip())
        name = whole.group(1).strip() if whole else ""
        value = scope.get(name) if name.isidentifier() else None
        if not isinstance(value, (dict, list)):
            return Size(0, 1, len(raw))
        if id(value) not in self.arguments:
            self.arguments[id(value)] = (value, self.size(value, src, {}, depth + 1))  # kept: its id stays its own
        return self.arguments[id(value)][1]

    def times(self, times: Any, scope: dict) -> int:
        if has_expr(times):
            try:
                times = substitute(times, scope)
            except ExprError:
                return 1
        valid = isinstance(times, int) and not isinstance(times, bool) and 0 < times <= MAX_TIMES
        return times if valid else 1  # an invalid `times` is reported by the validation, not counted

    def check(self, body: Size, times: int, src: Path) -> None:
        copies = body * times
        over = copies.nodes > self.limits.nodes or copies.values > self.limits.values or copies.text > self.limits.text
        if over and self.copies is None:
            self.copies = Copies(src + ("times",), times, body)

    def template(self, name: str, depth: int) -> Size:
        template = self.blocks.get(name)
        if template is None or name in self.active:
            return Size()  # unknown or recursive: the expansion reports it
        if name not in self.templates:
            self.active.add(name)
            self.templates[name] = self.size(template.body, ("blocks", name, "body"), self.variables, depth + 1)
            self.active.discard(name)
        return self.templates[name]
