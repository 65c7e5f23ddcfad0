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
from netcfg.cli.bench_dist import StrategyOpt
from netcfg.errors import InputError, Loc
from netcfg.numbers import parse_size
from netcfg.text import human_bytes, units_text

OutputOpt = Annotated[
    Path,
    typer.Option(
        "--output",
        "-o",
        metavar="FILE",
        help="Checkpoint file to write (.safetensors); with --max-shard-size, its index (.safetensors.index.json).",
        callback=paths("-o", write=True),
    ),
]
CkptArg = Annotated[
    Path,
    typer.Argument(metavar="CHECKPOINT", help="Checkpoint: a .safetensors file, or a sharded one's .index.json.",
                   show_default=False, callback=paths()),
]  # fmt: skip
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


def _size(text):
    return text if isinstance(text, int) else parse_size(text, Loc(f"--max-shard-size {text}"))


ShardOpt = Annotated[
    Optional[int],
    typer.Option("--max-shard-size", metavar="SIZE", parser=_size,
                 help="Write shards of at most SIZE of tensors (500MB, 2GB, 1GiB) and an index naming them: "
                      "-o NAME.safetensors.index.json."),
]  # fmt: skip
NprocOpt = Annotated[
    Optional[int],
    typer.Option("--nproc", metavar="N", show_default=False,
                 help="Build (save) or load the model sharded over N processes (gloo on CPU, NCCL on CUDA), "
                      "through torch.distributed.checkpoint: the same file(s) as one process."),
]  # fmt: skip
StrictOpt = Annotated[
    bool, typer.Option("--strict/--non-strict", help="Refuse any missing, unexpected or mismatched tensor.")
]


def save(
    spec: SpecArg,
    output: OutputOpt,
    max_shard_size: ShardOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    set_: SetOpt = None,
    plugin: PluginOpt = None,
    memory_check: MemoryOpt = True,
    nproc: NprocOpt = None,
    strategy: StrategyOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Build and initialize a spec, then write its weights and buffers (ties stored once) with the spec embedded.

    Example: netcfg save configs/gpt2.yaml -o gpt2.safetensors --seed 1

    Sharded: netcfg save configs/gpt2.yaml -o gpt2.safetensors.index.json --max-shard-size 200MB

    On 2 processes: netcfg save configs/gpt2.yaml -o gpt2.safetensors --nproc 2 --strategy fsdp
    """
    from netcfg.actions.checkpoint import save as save_checkpoint
    from netcfg.actions.model import build_model
    from netcfg.io.tensor_files import check_index_output, check_output

    _distributed_flags(nproc, strategy, {"--no-memory-check": not memory_check, "--plugin": bool(plugin)})
    (check_output if max_shard_size is None else check_index_output)(output, "-o")
    if nproc is not None:
        from netcfg.actions import dist_checkpoint

        saved = dist_checkpoint.save(load(spec, set_, plugin), output, nproc, _strategy(strategy), seed,
                                     max_shard_size, device)  # fmt: skip
        if saved is None:
            return  # a rank other than 0 under torchrun: rank 0 reports
        for warning in saved.warnings:
            note(warning)
    else:
        built = build_model(load(spec, set_, plugin), device=device, seed=seed, memory_check=memory_check)
        for warning in built.warnings:
            note(warning)
        saved = save_checkpoint(built, output, max_shard_size=max_shard_size)
    tied = f", {len(saved.ties)} tie group(s) stored once" if saved.ties else ""
    shards = f" in {len(saved.shards)} shard(s)" if max_shard_size is not None else ""
    on = f" on {nproc} processes ({_strategy(strategy)})" if nproc is not None else ""
    out(f"wrote {saved.path}{on}: {saved.tensors} tensors{shards}{tied}, {saved.parameters:,} parameters, "
        f"{saved.bytes:,} bytes ({human_bytes(saved.bytes)}), spec sha256 {saved.spec_sha256[:16]}")  # fmt: skip


def _distributed_flags(nproc: int | None, strategy, ignored: dict[str, bool]) -> None:
    """--strategy needs --nproc; flags a sharded save or load ignores are refused."""
    if strategy is not None and strategy.value == "hsdp":  # StrategyOpt is bench/build/run's too
        raise InputError("save and load do not take --strategy hsdp yet: use ddp or fsdp", Loc("--strategy hsdp"))
    if nproc is None:
        refuse_flags({f"--strategy {strategy.value}" if strategy else "": strategy is not None},
                     "needs --nproc N (the processes to shard the model over)")  # fmt: skip
    else:
        refuse_flags(ignored, "does not apply to --nproc")  # --plugin: the processes would not load it


def _strategy(strategy) -> str:
    """fsdp unless told: a sharded checkpoint is what --nproc is for."""
    return "fsdp" if strategy is None else strategy.value


def load_cmd(
    checkpoint: CkptArg,
    config: ConfigOpt = None,
    device: DeviceOpt = None,
    check: CheckOpt = False,
    strict: StrictOpt = True,
    set_: SetOpt = None,
    plugin: PluginOpt = None,
    input: CheckInputOpt = None,
    nproc: NprocOpt = None,
    strategy: StrategyOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Rebuild the model a checkpoint describes and load its tensors, verifying every name, shape and dtype.

    Example: netcfg load gpt2.safetensors --device cpu --check

    Sharded over 2 processes: netcfg load gpt2.safetensors --nproc 2 --check
    """
    from netcfg.actions.checkpoint import load as load_checkpoint
    from netcfg.building import plugins
    from netcfg.cli.build import summary_line

    if config is None:
        refuse_flags({"--set": bool(set_)}, "needs --config (a checkpoint's embedded spec is used as saved)")
    refuse_flags({"--input": input is not None and not check}, "needs --check (the checksum is of the outputs for it)")
    _distributed_flags(nproc, strategy, {"--non-strict": not strict, "--plugin": bool(plugin)})
    plugins.load(plugin or [])
    spec = load(config, set_, plugin) if config is not None else None
    if nproc is not None:
        _load_sharded(checkpoint, nproc, _strategy(strategy), spec, device, check, input)
        return
    loaded = load_checkpoint(checkpoint, spec=spec, device=device, strict=strict, check=check and input is None)
    if loaded.built.device.type == "meta":  # known only now: the device may come from the spec
        refuse_flags({"--check": check}, "needs values, which the meta device does not hold (use --device cpu)")
    if input is not None:
        loaded.checksum = _checksum_on(loaded, input)
    for problem in loaded.problems:
        note(f"{checkpoint}: warning: {problem}")
    missed = loaded.model_tensors - loaded.model_tensors_loaded
    if not strict and missed and loaded.built.device.type != "meta":
        note(f"{checkpoint}: warning: --non-strict loaded {loaded.model_tensors_loaded} of the model's "
             f"{loaded.model_tensors} tensors; the other {missed} keep their initialization (seed "
             f"{loaded.built.seed})")  # fmt: skip
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


def _load_sharded(checkpoint: Path, nproc: int, strategy: str, spec, device, check: bool, input) -> None:
    from netcfg.actions import dist_checkpoint
    from netcfg.cli.build import summary_line

    given = None if input is None else str(input)
    loaded = dist_checkpoint.load(checkpoint, nproc, strategy, spec, device, check, given)
    if loaded is None:
        return  # a rank other than 0 under torchrun: rank 0 reports
    units = f", {units_text(loaded.units)}" if strategy == "fsdp" else ""
    out(f"loaded {checkpoint} on {nproc} processes ({strategy}{units}): {loaded.tensors} of {loaded.tensors} tensors")
    out(summary_line(loaded.summary))
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
    Path,
    typer.Argument(
        metavar="FILE",
        help="A .safetensors file, or a sharded checkpoint's .index.json.",
        show_default=False,
        callback=paths(),
    ),
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
