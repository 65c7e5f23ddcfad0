"""netcfg validate: schema and shapes, on the meta device; nothing is allocated."""

from __future__ import annotations

import typer

from netcfg.cli._common import DebugOpt, PluginOpt, SetOpt, SpecArg, load, note, out


def validate(spec: SpecArg, set_: SetOpt = None, plugin: PluginOpt = None, debug: DebugOpt = False) -> None:
    """Check a spec: keys, types, templates, shapes and ties. Exit 0 when valid, 2 when not.

    Example: netcfg validate configs/mlp.yaml --set model.layers.0.out_features=128
    """
    from netcfg.actions.model import build_model

    loaded = load(spec, set_, plugin)
    built = build_model(loaded, device="meta")
    for warning in built.warnings:
        note(warning)
    count = sum(p.numel() for p in built.model.parameters())
    out(f"{spec}: ok ({count:,} parameters, {output_shapes(built.outputs)})")


def output_shapes(outputs: dict[str, tuple]) -> str:
    """'output shape [2, 10]', or 'outputs logits [2, 5, 3], pooled [2, 8]'."""
    if len(outputs) == 1:
        return f"output shape {list(next(iter(outputs.values()))[0])}"
    return "outputs " + ", ".join(f"{name} {list(shape)}" for name, (shape, _) in outputs.items())


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
