"""netcfg layers: the catalogue of layer types and the initializers, with their arguments. No torch import."""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from typing import Annotated, Optional

import typer

from netcfg.cli._common import DebugOpt, Format, FormatOpt, PluginOpt, out
from netcfg.errors import InputError, Loc

NameArg = Annotated[
    Optional[str],
    typer.Argument(metavar="NAME", help="Show one layer type or initializer in detail.", show_default=False),
]


def layers(
    name: NameArg = None, format: FormatOpt = Format.table, plugin: PluginOpt = None, debug: DebugOpt = False
) -> None:
    """List the layer types and initializers a spec can use, or the arguments of one.

    Example: netcfg layers attention
    """
    from netcfg.actions.catalogue import initializers

    infos, inits = _catalogue(plugin), initializers()
    if name is not None:
        infos = [_find(name, infos + inits)]
    elif format is Format.json:
        infos = infos + inits
    if format is Format.json:
        out(json.dumps([_plain(i) for i in infos], indent=2), data=True)
    elif name is not None:
        out(detail(infos[0]))
    else:
        out(table(infos, inits))


def _catalogue(plugin: list[str] | None) -> list:
    """The layer infos: from the cached built-in catalogue unless a plugin adds types."""
    if not plugin:
        from netcfg.actions.catalogue import layers as cached

        return cached()
    from netcfg.building import plugins
    from netcfg.catalogue.describe import layers as described

    plugins.load(plugin)
    return described()


def _find(name: str, infos: list):
    """A layer type or an initializer by name."""
    from netcfg.suggest import suggest

    found = [i for i in infos if i.name == name]
    if found:
        return found[0]
    known = [i.name for i in infos]
    raise InputError(f"unknown layer type or initializer '{name}'{suggest(name, known)}", Loc(name))


def _plain(info) -> dict:
    if is_dataclass(info):
        return asdict(info)
    return {**vars(info), "args": [dict(vars(a)) for a in info.args]}


def table(infos, initializers: list) -> str:
    width = max(len(i.name) for i in infos + initializers)
    lines = []
    kind = None
    for info in infos:
        if info.kind != kind:
            kind = info.kind
            lines += ["" if lines else None, f"{kind}s:"]
        lines.append(f"  {info.name:<{width}}  {info.doc}")
    lines += ["", "initializers (init: {kind: NAME, ...} in an init rule):"]
    lines += [f"  {i.name:<{width}}  {i.doc}" for i in initializers]
    lines += ["", "netcfg layers NAME shows the arguments of a layer type or an initializer."]
    return "\n".join(line for line in lines if line is not None)


def detail(info) -> str:
    lines = [f"{info.name} ({info.kind}): {info.doc}", ""]
    for arg in info.args:
        need = "required" if arg.required else f"default {arg.default}"
        lines.append(f"  {arg.name}: {arg.type}  ({need})")
        if arg.doc:  # every line of a long docstring under its argument
            lines += [f"      {line.strip()}" for line in arg.doc.splitlines() if line.strip()]
    if not info.args:
        lines.append("  (no arguments)")
    lines += ["", _footer(info)]
    return "\n".join(lines)


def _footer(info) -> str:
    if info.kind == "initializer":
        return f"Used in an init rule, e.g. init: [{{params: '*.weight', init: {{kind: {info.name}}}}}]"
    return "Every node also takes: name, trainable, inputs (graph nodes), if."


def register(app: typer.Typer) -> None:
    app.command("layers")(layers)
