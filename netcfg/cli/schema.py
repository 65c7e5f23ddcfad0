"""netcfg schema: the JSON Schema of the spec language. No torch import."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from netcfg.cli._common import DebugOpt, PluginOpt, out, paths

OutOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--output",
        "-o",
        metavar="FILE",
        help="Write to this file instead of stdout.",
        callback=paths("--output", write=True),
    ),
]


def schema(output: OutOpt = None, plugin: PluginOpt = None, debug: DebugOpt = False) -> None:
    """Print the JSON Schema of spec files (for editor completion, e.g. yaml-language-server).

    Example: netcfg schema -o netcfg.schema.json
    """
    if plugin:
        from netcfg.building import plugins
        from netcfg.spec.schema import json_schema

        plugins.load(plugin)
    else:
        from netcfg.actions.catalogue import json_schema
    text = json.dumps(json_schema(), indent=2)
    if output is None:
        out(text, data=True)
        return
    from netcfg.io.output import JSON_SCHEMA, write_file

    write_file(output, (text + "\n").encode(), "--output", JSON_SCHEMA)  # checked, atomic: never the spec itself
    out(f"wrote {output}")


def register(app: typer.Typer) -> None:
    app.command("schema")(schema)
