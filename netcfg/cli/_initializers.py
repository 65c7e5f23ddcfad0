"""The initializers of init rules, described like the catalogue's layers (name, doc, arguments).

Read from the pydantic models of netcfg.spec.model (no torch). Creating those models costs
~0.2 s, so the plain `netcfg layers` listing takes names and docs from the cached schema
(netcfg.catalogue.cache, written from the same models) and only the details import them.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Literal, get_args, get_origin


def listing() -> dict[str, str]:
    """Initializer name -> one-line doc, in declaration order, from the cached schema."""
    from netcfg.catalogue.cache import json_schema

    defs = json_schema()["$defs"]
    refs = defs["InitRule"]["properties"]["init"]["oneOf"]
    models = [defs[ref["$ref"].rsplit("/", 1)[-1]] for ref in refs]
    return {m["properties"]["kind"]["const"]: _first_line(m.get("description")) for m in models}


def infos() -> list[SimpleNamespace]:
    """Every initializer with the attributes of a layer info (name, kind, doc, args, origin)."""
    from netcfg.spec.model import Initializer

    union = get_args(Initializer)[0]  # Annotated[Union[...], Field(discriminator="kind")]
    return [_info(model) for model in get_args(union)]


def _info(model) -> SimpleNamespace:
    fields = model.model_fields
    name = get_args(fields["kind"].annotation)[0]
    args = [_arg(n, f) for n, f in fields.items() if n != "kind"]
    return SimpleNamespace(name=name, kind="initializer", doc=_first_line(model.__doc__), args=args, origin="netcfg")


def _arg(name: str, field) -> SimpleNamespace:
    from pydantic import BaseModel

    required = field.is_required()
    default = "" if required else _show(field.get_default(call_default_factory=True))
    # A list of sub-models (a mixture's components) is documented by the sub-model's docstring.
    nested = [a for a in get_args(field.annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    doc = field.description or (_first_line(nested[0].__doc__) if nested else "")
    return SimpleNamespace(name=name, type=_type_name(field.annotation), default=default, required=required, doc=doc)


def _type_name(annotation) -> str:
    """As `netcfg layers` writes a layer argument's type: float, 'a' | 'b', list[X]."""
    if get_origin(annotation) is Literal:
        return " | ".join(repr(a) for a in get_args(annotation))
    if get_origin(annotation) is list:
        return f"list[{_type_name(get_args(annotation)[0])}]"
    return getattr(annotation, "__name__", str(annotation))


def _show(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _first_line(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0] if lines else ""
