"""Layer arguments computed from the incoming shape, just before the layer is built.

`{type: conv2d, out_channels: "${in_channels // 2}"}`: the expansion leaves such an expression
as text (the other names it read written in as their values) and validation checks the rest of
the layer with a placeholder number in its place (netcfg/spec/validate.py). Here, knowing the
shape of the tensor reaching the layer, the builder computes it (spec/expr.py's closed
language: in_channels, in_features, in_height, in_width) and validates the layer again with the
numbers, so the built layer, its records and `inspect` hold numbers only.
"""

from __future__ import annotations

from typing import Any

from netcfg.catalogue.base import Node
from netcfg.catalogue.shapes import fmt
from netcfg.errors import BuildError, Diagnostic
from netcfg.spec.expr import BUILD_NAMES, ExprError, has_expr, names, shape_names, substitute
from netcfg.spec.model import Spec
from netcfg.spec.validate import pydantic_problems


def computed(node: Node, xs: list, where: str, spec: Spec) -> Node:
    """`node` with its arguments that read the incoming shape computed for its inputs `xs` (the
    first one: a merge's first input); `where`: the module path, named in errors."""
    if not node._deferred:
        return node
    shape = tuple(int(s) for s in xs[0].shape) if xs else ()
    scope = shape_names(shape)
    head = f"layer '{where or 'model'}' ({node.type}) with input {fmt(shape)}"
    problems: list[Diagnostic] = []
    values = {f: _compute(getattr(node, f), (f,), scope, node, head, spec, problems) for f in node._deferred}
    if problems:
        raise BuildError(problems)
    data = {k: getattr(node, k) for k in node.model_fields_set} | values

    def loc(path: tuple):
        return spec.loc(node._path + tuple(p for p in path if p != "<key>"))

    problems, resolved = pydantic_problems(type(node), data, loc)
    if problems:
        source = ", ".join(f"{f} '{getattr(node, f)}'" for f in node._deferred)
        raise BuildError([Diagnostic(d.loc, f"{head}: {d.message} (computed from {source})") for d in problems])
    resolved._path = node._path
    resolved._computed = {f: getattr(node, f) for f in node._deferred}
    return resolved


def _compute(value: Any, path: tuple, scope: dict, node: Node, head: str, spec: Spec, problems: list) -> Any:
    if isinstance(value, list):
        return [_compute(v, path + (i,), scope, node, head, spec, problems) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _compute(v, path + (k,), scope, node, head, spec, problems) for k, v in value.items()}
    if not has_expr(value):
        return value
    missing = sorted((names(value) & BUILD_NAMES.keys()) - scope.keys())
    try:
        if missing:  # in_height of a 2-D input
            raise ExprError(f"{missing[0]} is {BUILD_NAMES[missing[0]]}: this input has no such dimension")
        return substitute(value, scope)
    except ExprError as exc:
        field = ".".join(str(p) for p in path)
        problems.append(Diagnostic(spec.loc(node._path + path), f"{head}: {field} '{value}': {exc}"))
        return None
