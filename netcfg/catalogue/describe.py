"""The layer catalogue and the JSON Schema of the spec language. No torch."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from netcfg.catalogue import composite
from netcfg.catalogue.base import Node
from netcfg.catalogue.registry import REGISTRY, Registry

_COMMON = set(Node.model_fields)


@dataclass(frozen=True)
class ArgInfo:
    name: str
    type: str
    default: str
    required: bool
    doc: str


@dataclass(frozen=True)
class LayerInfo:
    name: str
    kind: str
    doc: str
    args: list[ArgInfo]
    origin: str


def layers(registry: Registry = REGISTRY, kind: str | None = None) -> list[LayerInfo]:
    return [_info(e) for e in registry.entries.values() if kind is None or e.kind == kind]


def _info(entry) -> LayerInfo:
    args = []
    for name, f in entry.model.model_fields.items():
        if name in _COMMON:
            continue
        required = f.is_required()
        default = "" if required else _show(f.get_default(call_default_factory=True))
        args.append(ArgInfo(name, _type_name(f.annotation), default, required, f.description or ""))
    doc = (entry.model.__doc__ or "").strip().splitlines()[0]
    return LayerInfo(entry.name, entry.kind, doc, args, entry.origin)


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, str) else str(value)


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _type_name(get_args(annotation)[0])
    if origin in (Union, UnionType):
        return " | ".join(_type_name(a) for a in get_args(annotation))
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(annotation))
    if origin is list:
        return f"list[{_type_name(get_args(annotation)[0])}]"
    if origin is dict:
        return f"mapping[str, {_type_name(get_args(annotation)[1])}]"
    if annotation is type(None):
        return "null"
    if annotation is Any:
        return "node"
    return getattr(annotation, "__name__", str(annotation))


def json_schema(registry: Registry = REGISTRY) -> dict:
    """JSON Schema (draft 2020-12) of a spec file, for editor completion and checks."""
    from netcfg.spec.model import FORMAT_VERSION, SpecHead

    schema = SpecHead.model_json_schema()
    defs = schema.setdefault("$defs", {})
    names = []
    for entry in registry.entries.values():
        sub = entry.model.model_json_schema(ref_template="#/$defs/{model}")
        for key, value in sub.pop("$defs", {}).items():
            defs.setdefault(key, value)
        _point_children_at_node(entry.name, sub)
        title = f"layer_{entry.name}"
        defs[title] = sub
        names.append(title)
    defs["Node"] = {
        "oneOf": [{"$ref": f"#/$defs/{n}"} for n in names],
        "discriminator": {"propertyName": "type", "mapping": {n[6:]: f"#/$defs/{n}" for n in names}},
    }
    _point_node_fields(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"netcfg spec, format {FORMAT_VERSION}"
    return schema


def _node_ref(shape: str) -> dict:
    ref = {"$ref": "#/$defs/Node"}
    if shape == "list":
        return {"type": "array", "items": ref, "minItems": 1}
    if shape == "map":
        return {"type": "object", "additionalProperties": ref, "minProperties": 1}
    return ref


def _point_children_at_node(name: str, sub: dict) -> None:
    for field, shape in composite.CHILD_FIELDS.get(name, {}).items():
        prop = sub["properties"][field]
        desc = prop.get("description")
        sub["properties"][field] = {**_node_ref(shape), **({"description": desc} if desc else {})}
    # Any value may be a ${...} expression before expansion; and a node may carry `if`.
    sub["properties"]["if"] = {"description": "Keep this node only when true (may be a ${...} expression)."}


def _point_node_fields(schema: dict) -> None:
    props = schema["properties"]
    for key in ("model",):
        props[key] = {**_node_ref("one"), "description": props[key].get("description", "")}
    props["shared"] = {**_node_ref("map"), "description": props["shared"].get("description", "")}
    block = schema["$defs"]["BlockDef"]["properties"]
    block["body"] = {**_node_ref("one"), "description": block["body"].get("description", "")}


# ---------------------------------------------------------------- the cached built-in catalogue

# `netcfg layers` and `netcfg schema` answer from this file when no plugin is named, so they
# need neither torch nor pydantic (creating the ~60 catalogue models takes a third of a
# second). A test checks it equals what the models say; rewrite it after changing them with
#     python -m netcfg.catalogue.describe
CACHE = Path(__file__).resolve().parent / "builtin_catalogue.json"


def cache_content() -> str:
    from dataclasses import asdict

    data = {"layers": [asdict(info) for info in layers()], "schema": json_schema()}
    return json.dumps(data, indent=1, sort_keys=False) + "\n"


if __name__ == "__main__":
    CACHE.write_text(cache_content())
    print(f"wrote {CACHE}")
