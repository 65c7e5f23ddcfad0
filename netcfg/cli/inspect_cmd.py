"""netcfg inspect: parameters, layers, FLOPs, memory and init coverage, on the meta device."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from typing import Annotated, Optional

import typer

from netcfg.cli._common import (
    DebugOpt,
    DTypeOpt,
    InspectFormat,
    InspectFormatOpt,
    PluginOpt,
    SetOpt,
    SpecArg,
    integer,
    is_checkpoint,
    load,
    note,
    out,
    printable,
    refuse_flags,
)
from netcfg.errors import BuildError, InputError, Loc
from netcfg.text import csv_cell, human_bytes

ParamsOpt = Annotated[bool, typer.Option("--params", help="Table of every parameter (path, shape, init, tie ...).")]
LayersOpt = Annotated[bool, typer.Option("--layers", help="Module tree with shapes, parameters and FLOPs per layer.")]
DepthOpt = Annotated[
    Optional[int],
    typer.Option("--depth", metavar="N", help="Deepest level shown by --layers (root = 0).",
                 parser=integer("--depth", 0, 10_000)),
]  # fmt: skip
GrepOpt = Annotated[
    Optional[str], typer.Option("--grep", metavar="REGEX", help="Only rows whose path matches this regular expression.")
]
InitOpt = Annotated[bool, typer.Option("--init", help="Which init rule set each parameter; unused rules.")]
TrainOpt = Annotated[bool, typer.Option("--train", help="Memory estimate for training (gradients, Adam state).")]

# A checkpoint is inspected as saved: its embedded spec is not changed.
_AS_SAVED = "does not apply to a checkpoint: it is inspected as saved (inspect its spec instead)"


def inspect(
    spec: SpecArg,
    params: ParamsOpt = False,
    layers: LayersOpt = False,
    depth: DepthOpt = None,
    grep: GrepOpt = None,
    init: InitOpt = False,
    train: TrainOpt = False,
    dtype: DTypeOpt = None,
    format: InspectFormatOpt = InspectFormat.table,
    set_: SetOpt = None,
    plugin: PluginOpt = None,
    debug: DebugOpt = False,
) -> None:
    """What is in a model, without allocating it: counts (ties counted once), shapes, FLOPs, memory.

    Example: netcfg inspect configs/gpt2.yaml --layers --depth 2
    """
    from netcfg.actions.inspection import inspect_spec

    pattern = _pattern(grep)
    checkpoint = is_checkpoint(spec)
    given = {"--layers": layers, "--depth": depth is not None, "--grep": grep is not None, "--init": init,
             "--train": train, "--dtype": dtype is not None, "--set": bool(set_), "--plugin": bool(plugin)}  # fmt: skip
    _refuse_ignored(given, checkpoint, format)
    layers = layers or depth is not None  # --depth only means something for the layer tree
    params = params or (grep is not None and not layers)  # --grep alone filters the parameter table
    if checkpoint and not (layers or init or train or dtype is not None):
        out(checkpoint_report(spec, params, format, pattern), data=format is not InspectFormat.table)
        return
    loaded = _embedded(spec, plugin) if checkpoint else load(spec, set_, plugin)
    try:
        report = inspect_spec(loaded, dtype=dtype.value if dtype else None, train=train)
    except BuildError as exc:
        if exc.partial is not None and format is InspectFormat.table:
            _print_partial(exc.partial)
        raise
    for warning in report.warnings:
        note(warning)
    if format is InspectFormat.json:
        out(json.dumps(report.model_dump(mode="json"), indent=2), data=True)  # ASCII: every name's escapes are JSON's
    elif format is InspectFormat.csv:
        out(params_csv(report, pattern), data=True)
    else:
        out(totals(report))
        if layers:
            out(layers_table(report, depth, pattern))
        if params:
            out(params_table(report, pattern))
        if init:
            out(init_table(report))


def _refuse_ignored(given: dict[str, bool], checkpoint: bool, format: InspectFormat) -> None:
    """Flags the chosen input and format would ignore are refused, naming the flag."""

    def only(*flags: str) -> dict[str, bool]:
        return {flag: given[flag] for flag in flags}

    if checkpoint:
        refuse_flags(only("--set"), _AS_SAVED)
    if format is InspectFormat.json:
        refuse_flags(only("--grep", "--depth"), "does not apply to --format json (it holds the whole report)")
    if format is InspectFormat.csv:
        refuse_flags(only("--layers", "--depth", "--init", "--train"),
                     "does not apply to --format csv (it is the parameter table)")  # fmt: skip


def _embedded(path, plugin: list[str] | None):
    """The spec a checkpoint embeds (its header alone is read): the model's layers, init rules and
    memory come from it, as from a spec file."""
    from netcfg.actions.checkpoint import embedded_spec
    from netcfg.building import plugins
    from netcfg.io.shards import read_checkpoint

    plugins.load(plugin or [])
    return embedded_spec(read_checkpoint(path))


def checkpoint_report(path, params: bool, format: InspectFormat, pattern: re.Pattern | None) -> str:
    """A checkpoint's contents from its header alone: instant whatever the file's size."""
    from dataclasses import asdict

    from netcfg.actions.checkpoint import describe

    info = describe(path)
    rows = [r for r in info.tensors if pattern is None or pattern.search(r[0])]
    if format is InspectFormat.json:
        return json.dumps(asdict(info), indent=2)
    if format is InspectFormat.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["name", "dtype", "shape", "bytes"])
        writer.writerows([csv_cell(n), d, "x".join(map(str, s)), b] for n, d, s, b in rows)
        return buffer.getvalue().rstrip("\n")
    elements = sum(math.prod(r[2]) for r in info.tensors)
    meta = info.metadata
    kind = f"sharded safetensors, {len(info.shards)} shards" if info.shards else "safetensors"
    lines = [
        f"{info.path}: {kind}, {len(info.tensors)} tensors, {elements:,} elements, "
        f"{human_bytes(info.size)} ({info.header_bytes:,}-byte {'index and headers' if info.shards else 'header'})",
        f"written by netcfg {meta.get('netcfg.version', '?')} (checkpoint format "
        f"{meta.get('netcfg.checkpoint_format', '?')}), torch {meta.get('torch.version', '?')}"
        if "netcfg.version" in meta else "not written by netcfg (no embedded spec)",
    ]  # fmt: skip
    if info.spec is not None:
        lines.append(
            f"spec         {info.spec.get('name') or '(unnamed)'}, sha256 {meta.get('netcfg.spec_sha256', '')[:16]}"
        )
    lines += [f"tie          {' = '.join(group)}" for group in info.ties]
    if params and info.shards:
        table = [[n, f"{t:,}", f"{b:,}"] for n, t, b in info.shards]
        lines.append(_table("shards", [("file", "left"), ("tensors", "right"), ("bytes", "right")], table))
    if params:
        table = [[n, d, _shape(s), f"{b:,}"] for n, d, s, b in rows]
        lines.append(_table("tensors", [("name", "left"), ("dtype", "left"), ("shape", "left"), ("bytes", "right")],
                            table))  # fmt: skip
    return "\n".join(lines)


def _pattern(grep: str | None) -> re.Pattern | None:
    if grep is None:
        return None
    try:
        return re.compile(grep)
    except re.error as exc:
        raise InputError(f"invalid regular expression: {exc}", Loc(f"--grep {grep}")) from None


def si(n: float, unit: str) -> str:
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {prefix}{unit}"
    return f"{n:.0f} {unit}"


def _io_lines(r) -> list[str]:
    """'input [2, 20] float32, parameters in float32', or one line per named input and output."""
    if list(r.inputs) == ["input"] and list(r.outputs) == ["output"]:
        return [f"input {r.input['shape']} {r.input.get('dtype', 'float32')}, parameters in {r.dtype}"]
    lines = [f"input {name} {one['shape']} {one.get('dtype', 'float32')}" for name, one in r.inputs.items()]
    lines += [f"output {name} {one['shape']} {one['dtype']}" for name, one in r.outputs.items()]
    return [*lines, f"parameters in {r.dtype}"]


def totals(r) -> str:
    tied = f" ({r.state_dict_parameters:,} counting each tied path)" if r.state_dict_parameters != r.parameters else ""
    per_dtype = ", ".join(f"{k} {human_bytes(v)}" for k, v in r.bytes.items() if k not in ("parameters", "buffers"))
    m = r.memory
    lines = [
        f"{r.name or 'model'}  {r.file}",
        *_io_lines(r),
        "",
        f"parameters   {r.parameters:,}{tied}",
        f"trainable    {r.trainable:,}",
        f"frozen       {r.frozen:,}",
        f"buffers      {r.buffers:,}",
        f"state_dict   {r.state_dict_entries:,} tensors",
        f"size         {human_bytes(r.bytes['parameters'] + r.bytes['buffers'])} ({per_dtype or 'empty'})",
        f"FLOPs        {si(r.flops, 'FLOPs')} = {si(r.macs, 'MACs')} per forward pass of the sample input"
        + (f", plus the uncounted work of {', '.join(repr(p) for p in r.flops_uncounted)} (it depends on the "
           "input's values)" if r.flops_uncounted else ""),
    ]  # fmt: skip
    lines += [f"tie          {' = '.join(group)}" for group in r.ties]
    lines.append(
        f"memory       {m.mode}: weights {human_bytes(m.weights)} + buffers {human_bytes(m.buffers)} + activations "
        f"{human_bytes(m.activations)}"
        + (f" + gradients {human_bytes(m.gradients)} + Adam {human_bytes(m.optimizer)}" if m.mode == "train" else "")
        + f" = {human_bytes(m.total)}"
    )
    return "\n".join(lines)


def _table(title: str, columns: list[tuple[str, str]], rows: list[list[str]]) -> str:
    """A plain aligned table (rich takes a second for a thousand rows)."""
    rows = [[printable(cell, lines=False) for cell in row] for row in rows]  # one row stays one line
    widths = [max([len(name)] + [len(row[i]) for row in rows]) for i, (name, _) in enumerate(columns)]

    def line(cells: list[str]) -> str:
        aligned = zip(cells, widths, columns, strict=True)
        padded = [c.rjust(w) if j == "right" else c.ljust(w) for c, w, (_, j) in aligned]
        return "  ".join(padded).rstrip()

    return "\n".join(["", title, line([name for name, _ in columns]), *(line(row) for row in rows)])


def _shape(s) -> str:
    return "[" + ", ".join(str(d) for d in s) + "]"


def layers_table(r, depth: int | None, pattern: re.Pattern | None) -> str:
    rows = []
    for layer in r.layers:
        if depth is not None and layer.depth > depth:
            continue
        if pattern is not None and not pattern.search(layer.path):
            continue
        name = layer.path.rsplit(".", 1)[-1] if layer.path else "(model)"
        flops = "?" if layer.flops is None else f"{layer.flops:,}"  # ?: depends on the input's values
        kind = layer.type + (f" ({', '.join(f'{k}={v}' for k, v in layer.computed.items())})" if layer.computed else "")
        rows.append([
            "  " * layer.depth + name, kind, " ".join(_shape(s) for s in layer.input_shapes),
            _shape(layer.output_shape), f"{layer.parameters:,}", f"{100 * layer.share:.1f}%", flops,
        ])  # fmt: skip
    columns = [("layer", "left"), ("type", "left"), ("input", "left"), ("output", "left"),
               ("params", "right"), ("share", "right"), ("FLOPs", "right")]  # fmt: skip
    return _table("layers", columns, rows)


def params_table(r, pattern: re.Pattern | None) -> str:
    rows = [
        [p.path, _shape(p.shape), p.dtype, p.device, f"{p.count:,}", "yes" if p.trainable else "no", p.init,
         "" if p.tie is None else f"tie {p.tie}"]
        for p in r.params
        if pattern is None or pattern.search(p.path)
    ]  # fmt: skip
    columns = [("path", "left"), ("shape", "left"), ("dtype", "left"), ("device", "left"), ("count", "right"),
               ("trainable", "left"), ("init", "left"), ("tie", "left")]  # fmt: skip
    return _table("parameters", columns, rows)


def params_csv(r, pattern: re.Pattern | None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "shape", "dtype", "device", "count", "trainable", "init", "tie"])
    for p in r.params:
        if pattern is None or pattern.search(p.path):
            shape = "x".join(str(d) for d in p.shape)
            row = [p.path, shape, p.dtype, p.device, p.count, p.trainable, p.init, "" if p.tie is None else p.tie]
            writer.writerow([csv_cell(cell) for cell in row])
    return buffer.getvalue().rstrip("\n")


def init_table(r) -> str:
    loaded = "".join(f"\nloaded by pretrained: {name} <- {source}" for name, source in r.init.pretrained.items())
    if not r.init.rules:
        kept = "every parameter keeps" if not loaded else "the others keep"
        return f"\nno init rules: {kept} PyTorch's default initialization" + loaded
    rows = [[str(u.index), u.where, u.kind, f"{u.matched:,}"] for u in r.init.rules]
    text = _table("init rules", [("rule", "right"), ("where", "left"), ("kind", "left"), ("sets", "right")], rows)
    default = ", ".join(r.init.default) if r.init.default else "none"
    return text + f"\n\nkeep PyTorch's default init: {default}" + loaded


def _print_partial(builder) -> None:
    rows = []
    for path, visit in builder.visits.items():
        ins = " ".join(_shape(s) for s in visit.in_shapes)
        rows.append([path or "(model)", visit.type, ins, _shape(visit.out_shape)])
    if rows:
        out(_table("built before the error", [("layer", "left"), ("type", "left"), ("input", "left"),
                                              ("output", "left")], rows))  # fmt: skip


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect)
