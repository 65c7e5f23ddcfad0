"""The closed catalogue: layer type name -> (argument model, build function).

Only code registers entries: the built-in catalogue below and plugins the user names
on the command line. A spec can only pick among registered names; nothing in a spec
is ever imported, evaluated or looked up as an attribute.

Argument models are torch-free, so ``validate``, ``layers`` and ``schema`` never pay
for importing torch; build functions live in :mod:`netcfg.building.layers`, imported on the
first build.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netcfg.catalogue import nodes as catalog
from netcfg.errors import PluginError

KINDS = ("layer", "merge", "composite", "expansion")


@dataclass
class Entry:
    name: str
    model: type[catalog.Node]
    kind: str
    build: Callable[..., Any] | None = None
    origin: str = "netcfg"


class Registry:
    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self._builtins_loaded = False

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
            self.load_builtin_builders()
        if entry.build is None:
            raise RuntimeError(f"no build function for layer type '{name}'")
        return entry.build

    def load_builtin_builders(self) -> None:
        if not self._builtins_loaded:
            self._builtins_loaded = True
            import netcfg.building.layers  # noqa: F401  (registers the torch build functions)


def _check_model(entry: Entry) -> None:
    model = entry.model
    if not (isinstance(model, type) and issubclass(model, catalog.Node)):
        raise PluginError(f"layer type '{entry.name}': args must be a subclass of netcfg.Node")
    tag = model.model_fields["type"].annotation
    if getattr(tag, "__args__", None) != (entry.name,):
        raise PluginError(f"layer type '{entry.name}': its args model needs `type: Literal['{entry.name}']`")
    if entry.kind not in KINDS:
        raise PluginError(f"layer type '{entry.name}': kind must be one of {', '.join(KINDS)}")


def _tag(model: type[catalog.Node]) -> str:
    return model.model_fields["type"].annotation.__args__[0]


REGISTRY = Registry()
for _kind, _models in [
    ("layer", catalog.LAYERS),
    ("merge", catalog.MERGES),
    ("composite", catalog.COMPOSITES),
    ("expansion", catalog.EXPANSIONS),
]:
    for _model in _models:
        REGISTRY.add(Entry(_tag(_model), _model, _kind))


def builds(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Attach the torch build function of a built-in layer type."""

    def attach(fn: Callable[..., Any]) -> Callable[..., Any]:
        REGISTRY.entries[name].build = fn
        return fn

    return attach


def register_layer(name: str, args: type[catalog.Node], kind: str = "layer") -> Callable:
    """Plugin decorator: register a new layer type with its args model and build function.

    The build function is called as ``build(args, in_shapes, ctx)`` on the meta device
    and returns an ``nn.Module`` whose parameters can be re-initialized by its
    ``reset_parameters()``.
    """

    def attach(fn: Callable[..., Any]) -> Callable[..., Any]:
        REGISTRY.add(Entry(name, args, kind, fn, origin=getattr(fn, "__module__", "a plugin")))
        return fn

    return attach
