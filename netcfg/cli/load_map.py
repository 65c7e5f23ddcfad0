"""netcfg load-map: the whole `pretrained:` mapping of a spec, from the files' headers alone."""

from __future__ import annotations

import dataclasses
import json

import typer

from netcfg.cli._common import DebugOpt, Format, FormatOpt, PluginOpt, SetOpt, SpecArg, load, note, out
from netcfg.errors import CheckpointError


def load_map(
    spec: SpecArg,
    format: FormatOpt = Format.table,
    set_: SetOpt = None,
    plugin: PluginOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Dry run of `pretrained:`: which file tensor (and transform) each model tensor would get, what
    is not loaded, what is not used. Reads only the files' headers; the model is built on the meta device.

    Example: netcfg load-map configs/gpt2.yaml --set 'pretrained=[{file: gpt2.safetensors, keymap: hf_gpt2}]'
    """
    from netcfg.actions.pretrained import load_map as plan_map

    found = plan_map(load(spec, set_, plugin))
    for warning in found.warnings:
        note(warning)
    if format is Format.json:
        data = dataclasses.asdict(found)
        data["refusals"] = [str(d) for d in found.refusals]  # the lines printed on stderr
        out(json.dumps(data, indent=2), data=True)
    elif not found.entries:
        out(f"{spec}: no `pretrained:` entries")
    else:
        out(table(found))
    if found.refusals:  # strict: true; the mapping is shown first, to see what to fix
        raise CheckpointError(found.refusals)


def table(found) -> str:
    from netcfg.cli.inspect_cmd import _shape, _table

    columns = [("model tensor", "left"), ("shape", "left"), ("file tensor", "left"), ("transform", "left"),
               ("rule", "left")]  # fmt: skip
    parts = []
    for e in found.entries:
        keymap = f", keymap {e.keymap}" if e.keymap else ""
        head = (f"pretrained {e.index}: {e.file}{keymap}: {e.tensors:,} tensors, {len(e.loaded):,} model tensors "
                f"loaded, {len(e.unused):,} file tensors unused, {len(e.ignored):,} ignored")  # fmt: skip
        rows = [[m.target, _shape(m.shape), " + ".join(m.keys), m.transform, m.rule] for m in e.loaded]
        parts.append(_table(head, columns, rows))
        parts += _names(f"not used (pretrained {e.index})", e.unused)
        parts += _names(f"ignored (pretrained {e.index})", e.ignored)
    parts += _names("model tensors not loaded", found.missing)
    return "\n".join(parts)


def _names(title: str, names: list[str]) -> list[str]:
    return ["", f"{title}: {len(names):,}", *(f"  {n}" for n in names)] if names else []


def register(app: typer.Typer) -> None:
    app.command("load-map")(load_map)
