"""The JSON Schema of a spec file (draft 2020-12), for editor completion and checks, and the
documentation of the initializers. No torch.

Made from the spec head's models and every registered layer declaration, then widened where
the loader is wider than the models: any value may be a ``${...}`` expression (substituted
before validation) and a node may carry ``if``.
"""

from __future__ import annotations

from typing import Any, get_args

from netcfg.catalogue import composite
from netcfg.catalogue.describe import LayerInfo, described
from netcfg.catalogue.registry import REGISTRY, Registry
from netcfg.spec.model import FORMAT_VERSION, Initializer, SpecHead


def json_schema(registry: Registry = REGISTRY) -> dict:
    """JSON Schema (draft 2020-12) of a spec file, for editor completion and checks."""
    schema = _allow_expressions(SpecHead.model_json_schema(), literal=_LITERAL_TOP)
    defs = schema.setdefault("$defs", {})
    defs["Expression"] = dict(EXPRESSION)
    names = []
    for entry in registry.entries.values():
        sub = _allow_expressions(entry.model.model_json_schema(ref_template="#/$defs/{model}"))
        for key, value in sub.pop("$defs", {}).items():
            defs.setdefault(key, value)
        _point_children_at_node(entry.name, sub)
        title = f"layer_{entry.name}"
        defs[title] = sub
        names.append(title)
    # Besides the layer types: a node whose type is an expression (`type: ${act}`), and a whole
    # node that is one (a block argument may be a mapping: `layers: [..., "${act}"]`).
    defs["Node"] = {
        "oneOf": [*({"$ref": f"#/$defs/{n}"} for n in names), _tag_expression("type"), _EXPR],
        "discriminator": {"propertyName": "type", "mapping": {n[6:]: f"#/$defs/{n}" for n in names}},
    }
    _point_node_fields(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"netcfg spec, format {FORMAT_VERSION}"
    return schema


# ---------------------------------------------------------------- ${...} expressions

# The loader substitutes ${...} before validating, so wherever the models want a number, a
# choice or a list, the file may hold an expression instead. The schema says so, rather than
# flagging `out_features: ${width}`; a string that is not an expression is still refused.
EXPRESSION = {
    "type": "string",
    "pattern": r"\$\{[^{}]*\}",
    "description": "A ${...} expression (over vars, block arguments, a repeat index), substituted before validation;"
    " in a layer's own arguments it may read the incoming shape (in_channels, ...), computed when building.",
}
_EXPR = {"$ref": "#/$defs/Expression"}
_NOTES = ("title", "description", "default", "examples")
_NOT_ANY_STRING = {"enum", "const", "pattern", "format", "maxLength", "$ref", "oneOf", "allOf", "not"}
# Top-level keys whose values the loader does not substitute (loader._substitute_top): vars
# are computed in order (expand.expand_vars; a var is a scalar, and a string takes an expression
# already), and blocks are templates (their bodies are nodes, expanded per use).
_LITERAL_TOP = ("vars", "blocks")


def _allow_expressions(schema: dict, literal: tuple = ()) -> dict:
    """A model's JSON Schema (its $defs too) with every value open to a ${...} expression.

    Runs before module-node fields are pointed at Node: those are expanded as nodes, not
    substituted as values, and Node takes expressions itself."""
    for model in [schema, *schema.get("$defs", {}).values()]:
        props = model.get("properties", {})
        for name, prop in props.items():
            if not (model is schema and name in literal):
                props[name] = _or_expression(prop)
    _expression_tags(schema)
    return schema


def _or_expression(prop: dict) -> dict:
    """`prop` (and its items) with an expression as an alternative wherever it refuses one; the
    annotations stay outside the anyOf, where editors read them."""
    prop = _items_or_expression(prop)
    if "$ref" in prop or "oneOf" in prop or "const" in prop or _takes_any_string(prop):
        return prop  # a model, or a union whose tag _expression_tags opened; a const is a tag
    if "anyOf" in prop:
        return {**prop, "anyOf": [*prop["anyOf"], _EXPR]}
    notes = {k: prop[k] for k in _NOTES if k in prop}
    return {"anyOf": [{k: v for k, v in prop.items() if k not in notes}, _EXPR], **notes}


def _items_or_expression(prop: dict) -> dict:
    """Each element of a list or mapping may be an expression too: `shape: [1, 3, ${size}, ${size}]`."""
    out = dict(prop)
    for key in ("items", "additionalProperties"):
        if isinstance(prop.get(key), dict):
            out[key] = _or_expression(prop[key])
    if "prefixItems" in prop:
        out["prefixItems"] = [_or_expression(p) for p in prop["prefixItems"]]
    if "anyOf" in prop:
        out["anyOf"] = [_items_or_expression(b) for b in prop["anyOf"]]
    return out


def _takes_any_string(prop: dict) -> bool:
    if "anyOf" in prop:
        return any(_takes_any_string(b) for b in prop["anyOf"])
    return prop.get("type", "string") == "string" and not _NOT_ANY_STRING & prop.keys()


def _tag_expression(tag: str) -> dict:
    """An object whose discriminating tag is an expression: which arguments fit is known only later."""
    return {"type": "object", "required": [tag], "properties": {tag: _EXPR}}


def _expression_tags(node: Any) -> None:
    """Add _tag_expression to every tagged union (`init: {kind: ${k}}` is substituted before validation)."""
    if isinstance(node, dict):
        if "oneOf" in node and "discriminator" in node:
            node["oneOf"].append(_tag_expression(node["discriminator"]["propertyName"]))
        for value in node.values():
            _expression_tags(value)
    elif isinstance(node, list):
        for value in node:
            _expression_tags(value)


# ---------------------------------------------------------------- module nodes


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
    # Any node may carry `if`: the expander drops the node when it is false.
    sub["properties"]["if"] = {
        "anyOf": [{"type": "boolean"}, _EXPR],
        "description": "Keep this node only when true (true, false or a ${...} expression).",
    }
    sub["properties"]["splice"] = {
        "anyOf": [{"type": "boolean"}, _EXPR],
        "description": "In a sequential's layers (or a repeat's body): put the layers of the sequential this node "
        "expands to in its place, flat.",
    }


def _point_node_fields(schema: dict) -> None:
    props = schema["properties"]
    for key in ("model",):
        props[key] = {**_node_ref("one"), "description": props[key].get("description", "")}
    props["shared"] = {**_node_ref("map"), "description": props["shared"].get("description", "")}
    block = schema["$defs"]["BlockDef"]["properties"]
    block["body"] = {**_node_ref("one"), "description": block["body"].get("description", "")}


def initializers() -> list[LayerInfo]:
    """Every initializer an init rule can name, documented like a layer type (`netcfg layers`)."""
    union = get_args(Initializer)[0]  # Annotated[Union[...], Field(discriminator="kind")]
    out = []
    for model in get_args(union):
        kind = get_args(model.model_fields["kind"].annotation)[0]
        out.append(described(model, kind, "initializer", skip={"kind"}))
    return out
