"""Validation of plain data against pydantic models, with errors mapped to YAML places.

pydantic reports every problem with a `loc` path; this module walks that path through
the data to find the value (or key) the problem is about, and rewrites pydantic's
message into one line that names the key and what is expected. Module nodes are
validated one at a time, dispatching on ``type`` through the registry (a
discriminated union that plugins can extend), so a problem deep in a model still
points at its own line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from netcfg.catalogue import composite
from netcfg.catalogue.base import Node, module_name_problem
from netcfg.catalogue.registry import Registry
from netcfg.errors import Diagnostic, Loc
from netcfg.spec.expr import BUILD_NAMES, has_expr, names
from netcfg.suggest import MAX_LISTED, close_matches, suggest

FAILED = object()
"""What expanding a node that had an error gives (the error is already reported)."""

LocOf = Callable[[tuple], Loc]

_EXPECTED = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "none_required": "null",
}


def yaml_repr(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def pydantic_problems(
    model: type[BaseModel], data: Any, loc_of: LocOf, owner: str = ""
) -> tuple[list[Diagnostic], Any]:
    """Validate; return (diagnostics, instance or None)."""
    try:
        return [], model.model_validate(data)
    except ValidationError as exc:
        return explain(exc, data, loc_of, owner, model), None


def explain(exc: ValidationError, data: Any, loc_of: LocOf, owner: str, model: Any = None) -> list[Diagnostic]:
    groups: dict[tuple, list[tuple[dict, tuple]]] = {}
    for err in exc.errors(include_url=False):
        if err.get("input") is FAILED:
            continue  # already reported where the expression failed
        path, rest = _data_path(data, err["loc"])
        groups.setdefault(path, []).append((err, rest))
    groups, unlisted = _few_unknown_keys(_deepest(groups))
    out = [_one(path, errs, data, loc_of, owner, model) for path, errs in groups.items()]
    out = _drop_missing_explained_by_typos(out, groups, data, model)
    if unlisted:
        out.append(Diagnostic(loc_of(unlisted[0] + ("<key>",)), f"... and {len(unlisted):,} more unknown keys"))
    return out


def _deepest(groups: dict) -> dict:
    """A union reports one error per branch; keep the branch that got deepest into the data.

    (For `inputs: [0]` against `str | list[str]`: keep 'inputs.0 must be a string', drop
    'inputs must be a string'.)"""
    prefixes = {path[:i] for path in groups for i in range(len(path))}  # every path's proper prefixes
    return {p: e for p, e in groups.items() if not (p in prefixes and all(rest for _, rest in e))}


def _few_unknown_keys(groups: dict) -> tuple[dict, list[tuple]]:
    """The first MAX_LISTED unknown keys (each gets a did-you-mean), and the paths of the others."""
    extra = [p for p, errs in groups.items() if errs[0][0]["type"] == "extra_forbidden"]
    for path in extra[MAX_LISTED:]:
        del groups[path]
    return groups, extra[MAX_LISTED:]


def _drop_missing_explained_by_typos(out: list, groups: dict, data: Any, model: Any) -> list:
    """'missing out_features' next to 'unknown out_feature; did you mean out_features?' says it twice."""
    suggested = set()
    for path, errs in groups.items():
        if errs[0][0]["type"] == "extra_forbidden" and path:
            allowed = keys_at(model, data, path[:-1])
            for match in close_matches(str(path[-1]), allowed):
                suggested.add(path[:-1] + (match,))
    kept = []
    for diagnostic, (path, errs) in zip(out, groups.items(), strict=True):
        err, rest = errs[0]
        if err["type"] == "missing" and rest and path + (rest[-1],) in suggested:
            continue
        kept.append(diagnostic)
    return kept


def _data_path(data: Any, loc: tuple) -> tuple[tuple, tuple]:
    """Follow pydantic's loc through the data; other segments are union branch labels."""
    path: list = []
    node = data
    rest = []
    for seg in loc:
        if (
            isinstance(node, dict)
            and seg in node
            or isinstance(node, list)
            and isinstance(seg, int)
            and 0 <= seg < len(node)
        ):
            path.append(seg)
            node = node[seg]
        else:
            rest.append(seg)
    return tuple(path), tuple(rest)


def _one(path: tuple, errs: list, data: Any, loc_of: LocOf, owner: str, model: Any) -> Diagnostic:
    err, rest = errs[0]
    kind = err["type"]
    if kind == "extra_forbidden":
        return _extra(path, data, loc_of, owner, model)
    if kind == "invalid_key":
        return Diagnostic(loc_of(path + ("<key>",)), f"key {yaml_repr(err['input'])} is not a string: keys are names")
    if kind == "missing":
        key = rest[-1] if rest else "?"
        return Diagnostic(loc_of(path), f"missing required key '{key}'{_in(path, owner)}")
    if kind == "union_tag_invalid":
        tags = re.findall(r"'([^']+)'", err["ctx"]["expected_tags"])
        tag = err["ctx"]["tag"]
        disc = err["ctx"]["discriminator"].strip("'")
        return Diagnostic(loc_of(path + (disc,)), f"unknown {disc} '{tag}'{suggest(tag, tags)}")
    if kind == "union_tag_not_found":
        disc = err["ctx"]["discriminator"].strip("'")
        return Diagnostic(loc_of(path), f"missing required key '{disc}'{_in(path, owner)}")
    if kind in ("value_error", "assertion_error"):
        return Diagnostic(loc_of(path), f"{_field(path)}: {err['ctx']['error']}")
    if kind in ("too_short", "too_long"):
        ctx = err["ctx"]
        limit = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        items = "item" if limit == 1 else "items"
        bound = "at least" if kind == "too_short" else "at most"
        return Diagnostic(loc_of(path), f"{_field(path)} must have {bound} {limit} {items}, got {ctx['actual_length']}")
    return Diagnostic(loc_of(path), f"{_field(path)} {_expectation(errs)}, got {yaml_repr(err['input'])}")


def _extra(path: tuple, data: Any, loc_of: LocOf, owner: str, model: Any) -> Diagnostic:
    key = path[-1] if path else "?"
    allowed = keys_at(model, data, path[:-1])
    return Diagnostic(loc_of(path + ("<key>",)), f"unknown key '{key}'{_in(path[:-1], owner)}{suggest(key, allowed)}")


def keys_at(model: Any, data: Any, path: tuple) -> list[str]:
    """The keys the model allows at `path` of `data` (for did-you-mean on unknown keys)."""
    types = [model]
    for seg in path:
        data = data[seg] if isinstance(data, (dict, list)) else None
        types = [t for c in types for t in _step(c, seg)]
        types = _pick(types, data)
    return [k for t in types if isinstance(t, type) and issubclass(t, BaseModel) for k in t.model_fields]


def _step(tp: Any, seg: Any) -> list:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(seg) if isinstance(seg, str) else None
        return _members(field.annotation) if field else []
    origin = get_origin(tp)
    if origin is list and isinstance(seg, int):
        return _members(get_args(tp)[0])
    if origin is dict:
        return _members(get_args(tp)[1])
    return []


def _members(tp: Any) -> list:
    origin = get_origin(tp)
    if origin is Annotated:
        return _members(get_args(tp)[0])
    if origin in (Union, UnionType):
        return [m for a in get_args(tp) for m in _members(a)]
    return [tp]


def _pick(types: list, data: Any) -> list:
    """In a discriminated union, keep the member whose tag the data names."""
    if not isinstance(data, dict):
        return types
    for tag in ("kind", "type"):
        chosen = [t for t in types if _tag_of(t, tag) == data.get(tag)]
        if chosen:
            return chosen
    return types


def _tag_of(tp: Any, tag: str) -> Any:
    if not (isinstance(tp, type) and issubclass(tp, BaseModel)) or tag not in tp.model_fields:
        return None
    args = get_args(tp.model_fields[tag].annotation)
    return args[0] if len(args) == 1 else None


def _in(path: tuple, owner: str) -> str:
    if path:
        return f" in '{_dotted(path)}'"
    return f" {owner}" if owner else ""


def _dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def _field(path: tuple) -> str:
    if not path:
        return "value"
    return f"'{_dotted(path)}'"


def _expectation(errs: list) -> str:
    phrases = []
    kinds = {err["type"] for err, _ in errs}
    for err, _ in errs:
        if err["type"] == "int_type" and "float_type" in kinds:
            continue  # "a number" covers it
        phrase = _phrase(err)
        phrase = phrase.removeprefix("must be ") if phrase.startswith("must be ") else phrase
        if phrase not in phrases:
            phrases.append(phrase)
    lead = "" if all(p.startswith("must ") for p in phrases) else "must be "
    if len(phrases) == 1:
        return lead + phrases[0]
    return lead + ", ".join(phrases[:-1]) + " or " + phrases[-1]


def _phrase(err: dict) -> str:
    kind = err["type"]
    if kind in _EXPECTED:
        return "must be " + _EXPECTED[kind]
    if kind == "string_pattern_mismatch" and "A-Za-z_" in str(err["ctx"].get("pattern", "")):
        return "must be an identifier (letters, digits and _, not starting with a digit; no dots)"
    if kind == "literal_error":
        expected = err["ctx"]["expected"]
        return "must be " + expected if " or " not in expected else "must be one of " + expected.replace(" or ", ", ")
    if kind == "value_error":
        return str(err["ctx"]["error"])
    msg = err["msg"]
    return (
        msg.replace("Input should be", "must be")
        .replace("Input should have", "must have")
        .replace("String should", "must")
        .replace("List should have", "must have")
        .replace("Dictionary should have", "must have")
    )


# ---------------------------------------------------------------- arguments computed when building


def _later_paths(data: dict) -> list[tuple]:
    """Paths of the `${...}` values the expansion left in a layer's arguments: they read the
    incoming shape, and the builder computes them (spec/expr.py's bind_later)."""
    found: list[tuple] = []
    stack: list[tuple[tuple, Any]] = [((k,), v) for k, v in data.items() if k != "type"]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            stack.extend((path + (k,), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((path + (i,), v) for i, v in enumerate(value))
        elif has_expr(value):
            found.append(path)
    return sorted(found, key=str)


def _with_placeholders(model: type[BaseModel], data: dict, later: list[tuple]) -> tuple[dict, list[tuple]]:
    """The data with each value computed when building replaced by a number its field takes (1,
    else 0), to validate everything else now; and the paths where the field takes neither."""
    later = [p for p in later if p[0] in model.model_fields]  # an unknown key is said as such
    if not later:
        return data, []
    probe, refused = data, later
    for number in (1, 0):
        probe = _replaced(probe, {p: number for p in refused})
        refused = [p for p in refused if p in _error_paths(model, probe)]
    return probe, refused


def _replaced(data: Any, values: dict[tuple, Any]) -> Any:
    """A copy of `data` with the values at these paths replaced (the rest shared)."""
    if () in values:
        return values[()]
    firsts = {p[0] for p in values}
    if isinstance(data, dict):
        return {k: _replaced(v, _under(values, k)) if k in firsts else v for k, v in data.items()}
    return [_replaced(v, _under(values, i)) if i in firsts else v for i, v in enumerate(data)]


def _under(values: dict[tuple, Any], key: Any) -> dict[tuple, Any]:
    return {p[1:]: v for p, v in values.items() if p[0] == key}


def _error_paths(model: type[BaseModel], data: Any) -> set[tuple]:
    try:
        model.model_validate(data)
    except ValidationError as exc:
        return {_data_path(data, err["loc"])[0] for err in exc.errors(include_url=False)}
    return set()


def _build_names(data: dict, path: tuple) -> set[str]:
    value = data
    for key in path:
        value = value[key]
    return names(value) & BUILD_NAMES.keys()


# ---------------------------------------------------------------- module nodes


class NodeValidator:
    """Validates a module tree node by node against the registry."""

    def __init__(self, registry: Registry, loc_of: LocOf, key_loc_of: LocOf, shared: list[str]):
        self.registry = registry
        self.loc_of = loc_of
        self.key_loc_of = key_loc_of
        self.shared = shared
        self.problems: list[Diagnostic] = []

    def fail(self, path: tuple, message: str) -> None:
        self.problems.append(Diagnostic(self.loc_of(path), message))

    def node(self, data: Any, path: tuple, in_graph: bool = False) -> Node | None:
        if data is FAILED:
            return None
        if not isinstance(data, dict):
            self.fail(path, f"expected a module node (a mapping with a 'type' key), got {yaml_repr(data)}")
            return None
        entry = self.entry(data, path)
        if entry is None:
            return None
        self.check_placement(data, path, in_graph)
        children = {f: s for f, s in composite.CHILD_FIELDS.get(entry.name, {}).items() if data.get(f) is not None}
        node = self.shallow(entry.model, data, path)
        validated = {f: self.children(entry.name, s, data[f], path + (f,)) for f, s in children.items()}
        if node is None or any(v is None for v in validated.values()):
            return None
        if validated:  # a leaf (most nodes) needs no copy
            node = node.model_copy(update=validated)
        node._path = path
        return node

    def entry(self, data: dict, path: tuple) -> Any:
        kind = data.get("type")
        if kind is FAILED:
            return None  # the expression that should have named it was reported
        if kind is None:
            self.fail(path, "module node has no 'type'")
            return None
        entry = self.registry.get(kind) if isinstance(kind, str) else None
        if entry is None or entry.kind == "expansion":
            names = [n for n, e in self.registry.entries.items() if e.kind != "expansion"]
            hint = suggest(kind, names) or " (see 'netcfg layers'; a plugin's types need --plugin)"
            self.fail(path + ("type",), f"unknown layer type {yaml_repr(kind)}{hint}")
            return None
        return entry

    def check_placement(self, data: dict, path: tuple, in_graph: bool) -> None:
        if in_graph and "name" in data:
            self.fail(path + ("name",), "a graph node is named by its key; remove 'name'")
        if not in_graph and "inputs" in data:
            self.fail(path + ("inputs",), "'inputs' is only allowed on the nodes of a graph")
        if data.get("type") == "shared" and isinstance(data.get("ref"), str) and data["ref"] not in self.shared:
            self.fail(path + ("ref",), f"no shared module '{data['ref']}'{suggest(data['ref'], self.shared)}")

    def shallow(self, model: type[Node], data: dict, path: tuple) -> Node | None:
        later = _later_paths(data) if self.registry.get(data["type"]).kind in ("layer", "merge") else []
        if later and path[0] == "shared":
            self.fail(path + later[0], "a shared module is one module for all its uses: its arguments cannot "
                                       "read the incoming shape (give a number, or a var)")  # fmt: skip
            return None
        probe, refused = _with_placeholders(model, data, later)
        problems, node = pydantic_problems(model, probe, lambda p: self._loc(path, p), owner=f"for {data['type']}")
        refused_at = {self.loc_of(path + p): p for p in refused}
        self.problems.extend(d for d in problems if d.loc not in refused_at)
        for p in refused:
            read = ", ".join(sorted(_build_names(data, p)))
            self.fail(path + p, f"'{_dotted(p)}' reads the incoming shape ({read}), known only when building: "
                                "only a layer's numeric arguments may read it")  # fmt: skip
        if node is None or refused or not later:
            return None if refused else node
        fields = sorted({p[0] for p in later})  # (all known fields: the node validated)
        node = node.model_copy(update={f: data[f] for f in fields})
        node._deferred = tuple(fields)
        return node

    def _loc(self, base: tuple, rel: tuple) -> Loc:
        if rel and rel[-1] == "<key>":
            return self.key_loc_of(base + rel[:-1])
        return self.loc_of(base + rel)

    def children(self, owner: str, shape: str, value: Any, path: tuple) -> Any:
        if shape == "one":
            return self.node(value, path)
        if shape == "list" and isinstance(value, list):
            items = [self.node(v, path + (i,)) for i, v in enumerate(value)]
            self.check_names(value, path)
            return None if any(i is None for i in items) else items
        if shape == "map" and isinstance(value, dict):
            bad = [k for k in value if not isinstance(k, str) or module_name_problem(k)]
            for k in bad:
                why = module_name_problem(k) if isinstance(k, str) else "a module name is a string"
                self.problems.append(Diagnostic(self.key_loc_of(path + (k,)), f"graph node name {yaml_repr(k)}: {why}"))
            items = {k: self.node(v, path + (k,), in_graph=True) for k, v in value.items()}
            return None if bad or any(i is None for i in items.values()) else items
        return None  # the shallow validation already reported the wrong shape

    def check_names(self, items: list, path: tuple) -> None:
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            name = item.get("name") if isinstance(item, dict) else None
            if name is FAILED or not isinstance(name, (str, type(None))):
                continue  # reported already, or by the node's own validation (a name must be a string)
            name = str(i) if name is None else name
            if name in seen:
                self.fail(path + (i, "name"), f"two modules named '{name}' here (the other is item {seen[name]})")
            seen.setdefault(name, i)
