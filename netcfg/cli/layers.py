"""netcfg layers: the catalogue of layer types with their arguments. No torch import."""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from typing import Annotated, Optional

import typer

from netcfg.cli._common import DebugOpt, Format, FormatOpt, PluginOpt, out
from netcfg.errors import InputError, Loc

NameArg = Annotated[
    Optional[str], typer.Argument(metavar="NAME", help="Show one layer type in detail.", show_default=False)
]


def layers(
    name: NameArg = None, format: FormatOpt = Format.table, plugin: PluginOpt = None, debug: DebugOpt = False
) -> None:
    """List the layer types a spec can use, or the arguments of one.

    Example: netcfg layers attention
    """
    from netcfg.suggest import suggest

    if plugin:
        from netcfg.building import plugins
        from netcfg.catalogue.describe import layers as catalogue

        plugins.load(plugin)
    else:
        from netcfg.catalogue.cache import layers as catalogue
    infos = catalogue()
    if name is not None:
        infos = [i for i in infos if i.name == name]
        if not infos:
            raise InputError(f"unknown layer type '{name}'{suggest(name, [i.name for i in catalogue()])}", Loc(name))
    if format is Format.json:
        out(json.dumps([_plain(i) for i in infos], indent=2))
    elif name is not None:
        out(detail(infos[0]))
    else:
        out(table(infos))


def _plain(info) -> dict:
    if is_dataclass(info):
        return asdict(info)
    return {**vars(info), "args": [dict(vars(a)) for a in info.args]}


def table(infos) -> str:
    width = max(len(i.name) for i in infos)
    lines = []
    kind = None
    for info in infos:
        if info.kind != kind:
            kind = info.kind
            lines += ["" if lines else None, f"{kind}s:"]
        lines.append(f"  {info.name:<{width}}  {info.doc}")
    lines += ["", "netcfg layers NAME shows the arguments of one type."]
    return "\n".join(line for line in lines if line is not None)


def detail(info) -> str:
    lines = [f"{info.name} ({info.kind}): {info.doc}", ""]
    for arg in info.args:
        need = "required" if arg.required else f"default {arg.default}"
        lines.append(f"  {arg.name}: {arg.type}  ({need})")
        if arg.doc:
            lines.append(f"      {arg.doc}")
    lines += ["", "Every node also takes: name, trainable, inputs (graph nodes), if."]
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    app.command("layers")(layers)
