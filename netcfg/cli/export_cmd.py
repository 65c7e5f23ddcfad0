"""netcfg export: a spec or checkpoint as a torch.export program (.pt2) or an ONNX file."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from netcfg.cli._common import (
    DebugOpt,
    DeviceOpt,
    MemoryOpt,
    PluginOpt,
    SeedOpt,
    SetOpt,
    load,
    note,
    out,
    paths,
    printable,
    refuse_flags,
)
from netcfg.errors import InputError, Loc
from netcfg.text import human_bytes


class ExportFormat(str, Enum):
    pt2 = "pt2"
    onnx = "onnx"


SUFFIXES = {".pt2": ExportFormat.pt2, ".onnx": ExportFormat.onnx}

SourceArg = Annotated[
    Path,
    typer.Argument(metavar="SPEC|CHECKPOINT", show_default=False, callback=paths(),
                   help="Spec file (YAML), or checkpoint from save (.safetensors, or a sharded one's .index.json)."),
]  # fmt: skip
OutputOpt = Annotated[
    Path,
    typer.Option("--output", "-o", metavar="FILE", help="File to write (.pt2 or .onnx).",
                 callback=paths("-o", write=True)),
]  # fmt: skip
ExportFormatOpt = Annotated[
    Optional[ExportFormat],
    typer.Option("--format", help="torch.export program or ONNX (default: from the -o suffix, else pt2)."),
]
CheckOpt = Annotated[
    bool,
    typer.Option("--check/--no-check",
                 help="Load the export back and compare it with PyTorch on the sample input; nothing is written "
                      "if they differ."),
]  # fmt: skip
StaticOpt = Annotated[
    bool, typer.Option("--static-batch", help="Fix the batch size to the spec's instead of leaving it dynamic.")
]


def export(
    source: SourceArg,
    output: OutputOpt,
    format: ExportFormatOpt = None,
    check: CheckOpt = True,
    static_batch: StaticOpt = False,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    set_: SetOpt = None,
    plugin: PluginOpt = None,
    memory_check: MemoryOpt = True,
    debug: DebugOpt = False,
) -> None:
    """Export a model for deployment with torch.export (batch dimension dynamic), or to ONNX.

    Example: netcfg export configs/resnet18.yaml -o resnet18.onnx
    """
    from netcfg.actions import export as actions
    from netcfg.cli._common import is_checkpoint

    chosen = _format(format, output)
    actions.check_output(output, chosen.value)
    if chosen is ExportFormat.onnx:
        actions.require_onnx(check)
    checkpoint = is_checkpoint(source)
    if checkpoint:
        refuse_flags({"--set": bool(set_), "--seed": seed is not None},
                     "does not apply to a checkpoint: the model and its seed are the ones it holds")  # fmt: skip
        refuse_flags({"--no-memory-check": not memory_check},
                     "does not apply to a checkpoint: it is read as `netcfg load` reads it")  # fmt: skip
    built = _built(source, checkpoint, device, seed, set_, plugin, memory_check)
    done = actions.export(built, output, chosen.value, dynamic_batch=not static_batch, check=check,
                          source=str(source))  # fmt: skip
    _report(done)


def _format(given: ExportFormat | None, output: Path) -> ExportFormat:
    implied = SUFFIXES.get(output.suffix.lower())
    if given is not None and implied is not None and implied is not given:
        raise InputError(f"--format {given.value} writes {'ONNX' if given is ExportFormat.onnx else 'a .pt2 program'}: "
                         f"end its name in .{given.value} (or drop --format)", Loc(f"-o {output}"))  # fmt: skip
    return given or implied or ExportFormat.pt2


def _built(source: Path, checkpoint: bool, device, seed, set_, plugin, memory_check: bool):
    if checkpoint:
        from netcfg.actions.checkpoint import load as load_checkpoint
        from netcfg.building import plugins

        plugins.load(plugin or [])
        return load_checkpoint(source, device=device).built
    from netcfg.actions.model import build_model

    built = build_model(load(source, set_, plugin), device=device, seed=seed, memory_check=memory_check)
    for warning in built.warnings:
        note(warning)
    return built


def _report(done) -> None:
    what = "torch.export program" if done.format == "pt2" else "ONNX model"
    out(f"wrote {done.path}: {what}, {done.bytes:,} bytes ({human_bytes(done.bytes)}), "
        f"{done.parameters:,} parameters, exported in {done.export_seconds:.2f} s")  # fmt: skip
    for label, ports, plain in (("input ", done.inputs, "input"), ("output", done.outputs, "output")):
        for port in ports:
            name = "" if port.name == plain else f"{printable(port.name, lines=False)} "
            out(f"{label} {name}[{', '.join(str(d) for d in port.shape)}] {port.dtype}")
    if done.checks:
        runner = "torch.export.load" if done.format == "pt2" else "onnxruntime"
        diffs = ", ".join(f"{c.max_abs_diff:.3g} at batch {c.batch}" for c in done.checks)
        out(f"check  {runner} vs PyTorch: max abs diff {diffs} (in {done.check_seconds:.2f} s)")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
