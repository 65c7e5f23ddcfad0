"""The closed catalogue: layer type name -> (declaration, build function).

Only code registers entries: the built-in declarations of this package and plugins the
user names on the command line. A spec can only pick among registered names; nothing in a
spec is ever imported, evaluated or looked up as an attribute.

Declarations are torch-free, so ``validate``, ``layers`` and ``schema`` never pay for
importing torch. The torch build functions are attached by netcfg.building.layers, which
the builder imports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, NamedTuple

from netcfg.catalogue import (
    activations,
    attention,
    composite,
    conv,
    custom,
    dense,
    embedding,
    learned,
    merges,
    norm,
    pooling,
    recurrent,
    reshape,
)
from netcfg.catalogue.base import Node
from netcfg.errors import PluginError

KINDS = ("layer", "merge", "composite", "expansion")

# Each family module's declarations, in the order `netcfg layers` lists them.
FAMILIES: tuple[tuple[ModuleType, str], ...] = (
    (dense, "layer"), (conv, "layer"), (norm, "layer"), (embedding, "layer"), (learned, "layer"),
    (activations, "layer"), (pooling, "layer"), (reshape, "layer"), (attention, "layer"), (recurrent, "layer"),
    (custom, "layer"), (merges, "merge"), (composite, "composite"),
)  # fmt: skip
EXPANSIONS = frozenset({"repeat", "block"})


class Made(NamedTuple):
    """What every registered build function returns: the module (torch.nn.Module) and, when
    it knows it, its meta output; None leaves the output to the declaration's rules (or, for
    a plugin, to a meta run)."""

    module: Any
    out: Any = None


@dataclass
class Entry:
    name: str
    model: type[Node]
    kind: str
    build: Callable[..., Any] | None = None
    origin: str = "netcfg"


class Registry:
    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}

    def add(self, entry: Entry) -> None:
        if entry.name in self.entries:
            raise PluginError(f"layer type '{entry.name}' is already registered by {self.entries[entry.name].origin}")
        _check_model(entry)
        self.entries[entry.name] = entry

    def get(self, name: str) -> Entry | None:
        return self.entries.get(name)

    def names(self) -> list[str]:
        return list(self.entries)

    def builder(self, name: str) -> Callable[..., Any]:
        entry = self.entries[name]
        if entry.build is None:
            raise RuntimeError(f"no build function for layer type '{name}' (import netcfg.building.layers)")
        return entry.build


def _check_model(entry: Entry) -> None:
    model = entry.model
    if not (isinstance(model, type) and issubclass(model, Node)):
        raise PluginError(f"layer type '{entry.name}': args must be a subclass of netcfg.Node")
    if tag(model) != entry.name:
        raise PluginError(f"layer type '{entry.name}': its args model needs `type: Literal['{entry.name}']`")
    if entry.kind not in KINDS:
        raise PluginError(f"layer type '{entry.name}': kind must be one of {', '.join(KINDS)}")


def tag(model: type[Node]) -> str | None:
    """The type name a declaration answers to (its `type: Literal[...]`), or None for a base class."""
    args = getattr(model.model_fields["type"].annotation, "__args__", None)
    return args[0] if args and len(args) == 1 and isinstance(args[0], str) else None


def declarations(module: ModuleType) -> list[type[Node]]:
    """The layer types a family module declares, in the order written."""
    found = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, Node)]
    return [m for m in found if m.__module__ == module.__name__ and tag(m) is not None]


REGISTRY = Registry()
for _module, _kind in FAMILIES:
    for _model in declarations(_module):
        _name = tag(_model)
        REGISTRY.add(Entry(_name, _model, "expansion" if _name in EXPANSIONS else _kind))


def builds(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Attach the torch build function of a built-in type: for a layer or merge it returns the
    module (its output comes from the declaration's rules); for a composite, a Made."""

    def attach(fn: Callable[..., Any]) -> Callable[..., Any]:
        entry = REGISTRY.entries[name]
        entry.build = fn if entry.kind in ("composite", "expansion") else _module_only(fn)
        return fn

    return attach


def _module_only(fn: Callable[..., Any]) -> Callable[..., Made]:
    return lambda node, xs, ctx: Made(fn(node, xs, ctx))


def _plugin(fn: Callable[..., Any]) -> Callable[..., Made]:
    """A plugin's build function returns a module or (module, meta_output)."""

    def build(node, xs, ctx) -> Made:
        result = fn(node, xs, ctx)
        return Made(*result) if isinstance(result, tuple) else Made(result)

    return build


def register_layer(name: str, args: type[Node], kind: str = "layer") -> Callable:
    """Plugin decorator: register a new layer type with its args model and build function.

    The build function is called as ``build(args, xs, ctx)`` with the meta input tensors
    and returns an ``nn.Module`` whose parameters can be re-initialized by its
    ``reset_parameters()``, or ``(module, meta_output)`` when its forward pass needs values
    and so cannot run on the meta device.
    """

    def attach(fn: Callable[..., Any]) -> Callable[..., Any]:
        REGISTRY.add(Entry(name, args, kind, _plugin(fn), origin=getattr(fn, "__module__", "a plugin")))
        return fn

    return attach
