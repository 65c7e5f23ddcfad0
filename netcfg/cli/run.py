"""netcfg run: build and run one forward pass."""

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
)
from netcfg.cli.build import summary_line
from netcfg.errors import Loc

InputOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--input",
        metavar="FILE",
        help="Run on the tensor in this .safetensors file instead of the sample.",
        callback=paths("--input"),
    ),
]
OutputOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--output",
        "-o",
        metavar="FILE",
        help="Write the output tensor to this .safetensors file.",
        callback=paths("--output", write=True),
    ),
]


def run(
    spec: SpecArg,
    input: InputOpt = None,
    output: OutputOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
    set_: SetOpt = None,
    plugin: PluginOpt = None,
    memory_check: MemoryOpt = True,
    debug: DebugOpt = False,
) -> None:
    """Build a spec and run a forward pass on its sample input (random, seeded) or on --input.

    Example: netcfg run configs/mlp.yaml --seed 3 -o out.safetensors
    """
    from netcfg.actions import model as actions
    from netcfg.io.tensor_files import check_output, write_tensors

    if output is not None:
        check_output(output, "--output")
    loaded = load(spec, set_, plugin)
    x = actions.read_input(str(input)) if input is not None else None
    where = Loc(f"--input {input}") if input is not None else None
    result = actions.run(loaded, device=device, seed=seed, inputs=x, memory_check=memory_check, input_where=where)
    for warning in result.warnings:
        note(warning)
    out(summary_line(result.summary))
    out(f"input  {list(result.input_shape)} {result.input_dtype}")
    out(f"output {list(result.output.shape)} {str(result.output.dtype).replace('torch.', '')}")
    out(f"preview {preview(result.output)}")
    out(f"checksum {result.checksum}")
    if output is not None:
        write_tensors({"output": result.output}, output, flag="--output")
        out(f"wrote {output}")


def preview(t, count: int = 6, total: int | None = None) -> str:
    flat = t.detach().reshape(-1)[:count].to("cpu")
    if flat.is_complex():
        items = [f"{v.real:.4g}{v.imag:+.4g}j" for v in flat.tolist()]
    else:
        items = [f"{v:.4g}" if isinstance(v, float) else str(v) for v in flat.tolist()]
    more = ", ..." if (t.numel() if total is None else total) > count else ""
    return "[" + ", ".join(items) + more + "]"


def register(app: typer.Typer) -> None:
    app.command("run")(run)
