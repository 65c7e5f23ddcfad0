"""The layer catalogue as data (names, kinds, arguments with types, defaults and docs). No torch."""

from __future__ import annotations

from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

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
