"""The layer catalogue as data (names, kinds, arguments with types, defaults and docs). No torch."""

from __future__ import annotations

from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

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
    entries = [e for e in registry.entries.values() if kind is None or e.kind == kind]
    return [described(e.model, e.name, e.kind, e.origin, skip=_COMMON) for e in entries]


def described(model: type[BaseModel], name: str, kind: str, origin: str = "netcfg", skip=frozenset()) -> LayerInfo:
    """A pydantic model's fields as documented arguments (a layer type's, an initializer's)."""
    args = [_arg(field, info) for field, info in model.model_fields.items() if field not in skip]
    return LayerInfo(name, kind, _first_line(model.__doc__), args, origin)


def _arg(name: str, field: FieldInfo) -> ArgInfo:
    required = field.is_required()
    default = "" if required else _show(field.get_default(call_default_factory=True))
    # A list of sub-models (a mixture's components) is documented by the sub-model's docstring.
    nested = [a for a in get_args(field.annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    doc = field.description or (_first_line(nested[0].__doc__) if nested else "")
    return ArgInfo(name, _type_name(field.annotation), default, required, doc)


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


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
