"""netcfg save / load / tensors: safetensors checkpoints and tensor files."""

from __future__ import annotations

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
    SpecArg,
    load,
    note,
    out,
    paths,
    printable,
    refuse_flags,
)
from netcfg.text import human_bytes

OutputOpt = Annotated[
    Path,
    typer.Option(
        "--output",
        "-o",
        metavar="FILE",
        help="Checkpoint file to write (.safetensors).",
        callback=paths("-o", write=True),
    ),
]
CkptArg = Annotated[
    Path,
    typer.Argument(metavar="CHECKPOINT", help="Checkpoint file (.safetensors).", show_default=False, callback=paths()),
]
ConfigOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--config",
        metavar="SPEC",
        help="Rebuild from this spec instead of the one embedded in the file.",
        callback=paths("--config"),
    ),
]
CheckOpt = Annotated[bool, typer.Option("--check", help="Run the sample input, print a checksum; report NaN/Inf.")]
StrictOpt = Annotated[
    bool, typer.Option("--strict/--non-strict", help="Refuse any missing, unexpected or mismatched tensor.")
]


def save(
    spec: SpecArg,
    output: OutputOpt,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    set_: SetOpt = None,
    plugin: PluginOpt = None,
    memory_check: MemoryOpt = True,
    debug: DebugOpt = False,
) -> None:
    """Build and initialize a spec, then write its weights and buffers (ties stored once) with the spec embedded.

    Example: netcfg save configs/gpt2.yaml -o gpt2.safetensors --seed 1
    """
    from netcfg.actions.checkpoint import save as save_checkpoint
    from netcfg.actions.model import build_model
    from netcfg.io.tensor_files import check_output

    check_output(output, "-o")
    built = build_model(load(spec, set_, plugin), device=device, seed=seed, memory_check=memory_check)
    for warning in built.warnings:
        note(warning)
    saved = save_checkpoint(built, output)
    tied = f", {len(saved.ties)} tie group(s) stored once" if saved.ties else ""
    out(f"wrote {saved.path}: {saved.tensors} tensors{tied}, {saved.parameters:,} parameters, "
        f"{saved.bytes:,} bytes ({human_bytes(saved.bytes)}), spec sha256 {saved.spec_sha256[:16]}")  # fmt: skip


def load_cmd(
    checkpoint: CkptArg,
    config: ConfigOpt = None,
    device: DeviceOpt = None,
    check: CheckOpt = False,
    strict: StrictOpt = True,
    set_: SetOpt = None,
    plugin: PluginOpt = None,
    input: CheckInputOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Rebuild the model a checkpoint describes and load its tensors, verifying every name, shape and dtype.

    Example: netcfg load gpt2.safetensors --device cpu --check
    """
    from netcfg.actions.checkpoint import load as load_checkpoint
    from netcfg.building import plugins
    from netcfg.cli.build import summary_line

    if config is None:
        refuse_flags({"--set": bool(set_)}, "needs --config (a checkpoint's embedded spec is used as saved)")
    refuse_flags({"--input": input is not None and not check}, "needs --check (the checksum is of the outputs for it)")
    plugins.load(plugin or [])
    spec = load(config, set_, plugin) if config is not None else None
    loaded = load_checkpoint(checkpoint, spec=spec, device=device, strict=strict, check=check and input is None)
    if loaded.built.device.type == "meta":  # known only now: the device may come from the spec
        refuse_flags({"--check": check}, "needs values, which the meta device does not hold (use --device cpu)")
    if input is not None:
        loaded.checksum = _checksum_on(loaded, input)
    for problem in loaded.problems:
        note(f"{checkpoint}: warning: {problem}")
    from netcfg.actions.model import summarize

    if loaded.built.device.type == "meta":
        out(f"checked {checkpoint}: {len(loaded.header.tensors)} tensors fit the model (meta device: no data read)")
    else:
        out(f"loaded {checkpoint}: {loaded.tensors_loaded} of {len(loaded.header.tensors)} tensors")
    out(summary_line(summarize(loaded.built)))
    for name, count in loaded.nonfinite.items():
        note(f"{checkpoint}: warning: tensor '{name}' holds {count:,} NaN/Inf values")
    if loaded.checksum is not None:
        out(f"checksum {loaded.checksum}")


CheckInputOpt = Annotated[
    Optional[Path],
    typer.Option("--input", metavar="FILE", callback=paths("--input"),
                 help="With --check: the checksum of the outputs for the tensors of this .safetensors file "
                      "(as `run --input` reads them) instead of the sample input."),
]  # fmt: skip


def _checksum_on(loaded, path: Path) -> str:
    """The checksum of the loaded model's outputs for the inputs in `path` (and its NaN/Inf check)."""
    from netcfg.actions import model as actions
    from netcfg.actions.checkpoint import check_weights
    from netcfg.errors import Loc

    check_weights(loaded)
    xs = actions.read_inputs(str(path), loaded.built.spec)
    return actions.run_built(loaded.built, xs, True, Loc(f"--input {path}")).checksum


NameArg = Annotated[
    Path, typer.Argument(metavar="FILE", help="A .safetensors file.", show_default=False, callback=paths())
]


def tensors(file: NameArg, debug: DebugOpt = False) -> None:
    """List the tensors of a safetensors file (names, dtypes, shapes, first values).

    Example: netcfg tensors out.safetensors
    """
    from netcfg.cli.run import preview
    from netcfg.io.reading import peek_tensors

    kind, items = peek_tensors(file)  # only the values printed are read
    out(f"{file}: {'one tensor' if kind == 'tensor' else f'a {kind} of {len(items)} tensors'}")
    for t in items:
        dtype = str(t.first.dtype).replace("torch.", "")
        out(f"  {printable(t.name, lines=False)}: {list(t.shape)} {dtype} {preview(t.first, total=t.count)}")


def register(app: typer.Typer) -> None:
    app.command("save")(save)
    app.command("load")(load_cmd)
    app.command("tensors")(tensors)
