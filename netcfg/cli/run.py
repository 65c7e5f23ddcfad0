"""netcfg run: build and run one forward pass."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from netcfg.cli import dist_cmds
from netcfg.cli._common import (
    DebugOpt,
    DeviceOpt,
    MemoryOpt,
    PluginOpt,
    SeedOpt,
    SetOpt,
    SpecArg,
    is_checkpoint,
    load,
    note,
    out,
    paths,
    refuse_flags,
)
from netcfg.cli.bench_dist import ReplicasOpt, StrategyOpt
from netcfg.cli.build import summary_line
from netcfg.errors import Loc

InputOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--input",
        metavar="FILE",
        help="Run on the tensor in this .safetensors file instead of the sample (named inputs: the tensors so named).",
        callback=paths("--input"),
    ),
]
OutputOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--output",
        "-o",
        metavar="FILE",
        help="Write the output tensor(s) to this .safetensors file, by output name.",
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
    nproc: dist_cmds.NprocOpt = None,
    strategy: StrategyOpt = None,
    replicas: ReplicasOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Build a spec (or load a checkpoint) and run a forward pass on its sample input (random, seeded) or on --input.

    Example: netcfg run configs/mlp.yaml --seed 3 -o out.safetensors; netcfg run model.safetensors --input x.safetensors
    """
    from netcfg.actions import model as actions
    from netcfg.io.tensor_files import check_output, write_tensors

    if output is not None:
        check_output(output, "--output")
    where = Loc(f"--input {input}") if input is not None else None
    if dist_cmds.wanted(nproc, strategy, replicas):
        loaded, result = dist_cmds.run(spec, set_, plugin, nproc, strategy, replicas, device, seed, memory_check, input)
        if result is None:
            return  # a rank other than 0 under torchrun: rank 0 reports
    elif is_checkpoint(spec):
        loaded, result = _run_checkpoint(spec, input, device, seed, set_, plugin, memory_check, where)
    else:
        loaded = load(spec, set_, plugin)
        xs = actions.read_inputs(str(input), loaded) if input is not None else None
        result = actions.run(loaded, device=device, seed=seed, inputs=xs, memory_check=memory_check, input_where=where)
    for warning in result.warnings:
        note(warning)
    out(summary_line(result.summary))
    for line in io_lines(result.inputs, result.outputs, loaded.head.named_inputs):
        out(line)
    out(f"checksum {result.checksum}")
    if output is not None:
        write_tensors(dict(result.outputs), output, flag="--output")
        out(f"wrote {output}")


def _run_checkpoint(path, input, device, seed, set_, plugin, memory_check, where):
    """A checkpoint runs as saved: the model its embedded spec describes, with its weights."""
    from netcfg.actions import model as actions
    from netcfg.actions.checkpoint import load as load_checkpoint
    from netcfg.building import plugins

    refuse_flags({"--set": bool(set_)}, "does not apply to a checkpoint: it runs as saved (run its spec instead)")
    plugins.load(plugin or [])
    built = load_checkpoint(path, device=device).built
    if seed is not None:
        built.seed = seed  # the sample inputs' seed; the weights are the file's
    xs = actions.read_inputs(str(input), built.spec) if input is not None else None
    return built.spec, actions.run_built(built, xs, memory_check, where, device)


def io_lines(inputs: dict[str, tuple], outputs: dict, named_inputs: bool) -> list[str]:
    """'input  [2, 20] float32', 'output [2, 10] float32', 'preview [...]'; with names when the
    model names its inputs or has several outputs."""
    lines = [
        f"input  {name + ' ' if named_inputs else ''}{list(shape)} {dtype}" for name, (shape, dtype) in inputs.items()
    ]
    several = len(outputs) > 1
    for name, t in outputs.items():
        label = f"{name} " if several else ""
        lines.append(f"output {label}{list(t.shape)} {str(t.dtype).replace('torch.', '')}")
        lines.append(f"preview {label}{preview(t)}")
    return lines


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
