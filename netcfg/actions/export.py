"""Export a built model for deployment: a torch.export program (.pt2) or an ONNX file.

The batch dimension (the first of each input whose first size is the first input's) is left
dynamic: the program is traced on an example batch of at least two rows (PyTorch fixes a
dimension of size 1 to 1) and then runs any batch size. The artifact is made in memory,
checked there (loaded back and run on two batch sizes, compared with the eager model), and
only then written, atomically, through netcfg's checked writer: a failed export or a failed
check leaves no file, and an existing file is replaced only if netcfg exported it. netcfg
never loads a .pt2 from disk (torch.export.load unpickles): the check reads back the bytes it
has just made.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import io
import json
import logging
import math
import os
import re
import time
import warnings
import zipfile
from collections.abc import Iterator

import torch
from torch import nn

from netcfg.actions.failures import TORCH_FAILURES, first_line, layer_failure, tracking
from netcfg.building import devices
from netcfg.building.builder import Built, named_outputs, sample_inputs
from netcfg.errors import BuildError, InputError, Loc
from netcfg.io import output

FORMATS = ("pt2", "onnx")
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
ONNX_EXTRA = "pip install 'netcfg-torch[onnx]'"
MARKER = "netcfg.json"
"""The extra file in a .pt2 archive (and the doc string's start in an ONNX file) that says netcfg wrote it."""
ONNX_MAX = 2**31 - 1
"""Protobuf's limit on one message: an ONNX model over 2 GiB needs external data files."""

# (atol, rtol) of the check: |exported - eager| <= atol + rtol * max |eager| for each output. Relative to
# the output's largest value, not to each element: a deep randomly initialized network's outputs reach
# 1e7 (ResNet-152), where float32's own rounding (eager vs float64) is ~30 even on elements near 0.
TOLERANCE = {torch.float16: (1e-2, 1e-2), torch.bfloat16: (1e-2, 1e-2)}
DEFAULT_TOLERANCE = (1e-4, 1e-4)


@dataclasses.dataclass(frozen=True)
class Check:
    batch: int
    max_abs_diff: float
    passed: bool
    scale: float = 0.0
    """The largest |eager output| (finite values): what the relative tolerance multiplies."""


@dataclasses.dataclass(frozen=True)
class Port:
    """One input or output of the exported program."""

    name: str
    shape: list
    """Sizes, 'batch' where the size is dynamic."""
    dtype: str


@dataclasses.dataclass(frozen=True)
class Exported:
    path: str
    format: str
    bytes: int
    parameters: int
    inputs: list[Port]
    outputs: list[Port]
    export_seconds: float
    """Tracing, converting and serializing."""
    check_seconds: float | None = None
    checks: list[Check] = dataclasses.field(default_factory=list)
    tolerance: tuple[float, float] = DEFAULT_TOLERANCE


# ---------------------------------------------------------------- the kinds of file netcfg replaces


def _netcfg_pt2(fd: int) -> bool:
    try:
        with zipfile.ZipFile(os.fdopen(os.dup(fd), "rb")) as archive:
            return any(name.endswith(f"/extra/{MARKER}") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError):
        return False


def _netcfg_onnx(fd: int) -> bool:
    """An ONNX ModelProto whose doc_string (field 6, written before the graph) starts with the marker."""
    head = os.pread(fd, 4096, 0)
    position = 0
    while position < len(head):
        key, position = _varint(head, position)
        number, wire = key >> 3, key & 7
        if number == 6 and wire == 2:
            size, position = _varint(head, position)
            return head[position : position + size].startswith(MARKER.encode())
        if number > 6 or number < 1:
            return False
        if wire == 0:
            _, position = _varint(head, position)
        elif wire == 2:
            size, position = _varint(head, position)
            position += size
        else:
            return False
    return False


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while position < len(data) and shift < 64:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
    return -1, len(data) + 1  # truncated or too long: the walk ends


KINDS = {
    "pt2": output.Kind("a .pt2 program exported by netcfg", _netcfg_pt2),
    "onnx": output.Kind("an ONNX file exported by netcfg", _netcfg_onnx),
}


def check_output(path: str | os.PathLike, format: str, flag: str = "-o") -> None:
    """Refuse, before any work, an output that cannot be written or is not netcfg's export."""
    output.check_output(path, flag, KINDS[format])


def missing_onnx_packages(check: bool = True) -> list[str]:
    """The packages --format onnx needs that are not installed (onnxruntime only to check)."""
    missing = []
    try:
        import onnx  # noqa: F401
    except ImportError:
        missing.append("onnx")
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        missing.append("onnxscript")
    if check:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            missing.append("onnxruntime")
    return missing


# ---------------------------------------------------------------- example inputs


def example_inputs(built: Built, batch: int | None = None) -> tuple[torch.Tensor, ...]:
    """The model's positional inputs: the spec's sample inputs or, for `batch`, as many rows of
    draws like them (the further rows from the following seeds) in each input that shares the
    first input's batch; on the model's device, floats in its dtype."""
    xs = sample_inputs(built.spec, built.device, built.seed)
    rows = xs[0].shape[0]
    if batch is not None and batch != rows:
        draws = [xs]
        while len(draws) * rows < batch:
            draws.append(sample_inputs(built.spec, built.device, (built.seed + len(draws)) % 2**63))
        xs = [torch.cat([d[i] for d in draws])[:batch] if _batched(x, rows) else x for i, x in enumerate(xs)]
    return tuple(x.to(built.dtype) if x.is_floating_point() and x.dtype != built.dtype else x for x in xs)


def _batched(x: torch.Tensor, rows: int) -> bool:
    """An input whose first size is the first input's counts it as its batch."""
    return x.dim() > 0 and x.shape[0] == rows


def _dynamic_shapes(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple:
    """torch.export's dynamic_shapes for `inputs`, shaped like forward's parameters: a graph's
    forward(*xs) takes its inputs as one var-positional argument, which gets one tuple."""
    batch = torch.export.Dim("batch")
    rows = inputs[0].shape[0]
    specs = [{0: batch} if _batched(x, rows) else None for x in inputs]
    parameters = inspect.signature(model.forward).parameters.values()
    fixed = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)
    if not any(p.kind is p.VAR_POSITIONAL for p in parameters) or fixed >= len(specs):
        return tuple(specs)
    return (*specs[:fixed], tuple(specs[fixed:]))


@dataclasses.dataclass(frozen=True)
class Names:
    inputs: list[str]
    outputs: list[str]


def _ports(program: torch.export.ExportedProgram, names: Names) -> tuple[list[Port], list[Port]]:
    """The program's inputs and outputs: names, shapes as traced ('batch' for the dynamic batch,
    '3*batch' for a size computed from it), dtypes."""
    nodes = {node.name: node for node in program.graph.nodes}
    ins = [nodes[name].meta["val"] for name in program.graph_signature.user_inputs]
    (results,) = next(node for node in program.graph.nodes if node.op == "output").args
    outs = [node.meta["val"] for node in results if hasattr(node, "meta")][: len(names.outputs)]
    symbol = _batch_symbol(program)

    def port(name: str, value) -> Port:
        shape = [size if isinstance(size, int) else _spelled(str(size), symbol) for size in value.shape]
        return Port(name, shape, devices.dtype_name(value.dtype))

    return ([port(n, v) for n, v in zip(names.inputs, ins, strict=False)],
            [port(n, v) for n, v in zip(names.outputs, outs, strict=False)])  # fmt: skip


def _spelled(size: str, symbol: str) -> str:
    """A symbolic size in the batch's name: s17 -> batch, 3*s17 -> 3*batch."""
    return re.sub(rf"\b{re.escape(symbol)}\b", "batch", size) if symbol else size


# ---------------------------------------------------------------- export


def export(
    built: Built,
    path: str | os.PathLike,
    format: str = "pt2",
    dynamic_batch: bool = True,
    check: bool = True,
    source: str = "",
) -> Exported:
    """Export `built`, check the artifact against the eager model, write it to `path` atomically."""
    if format not in FORMATS:
        raise InputError(f"unknown export format {format!r} (one of {', '.join(FORMATS)})", Loc("--format"))
    _refuse_meta(built)
    check_output(path, format)
    if format == "onnx":
        require_onnx(check)
    model = built.model.eval()
    declared = example_inputs(built)
    traced = example_inputs(built, 2) if dynamic_batch and declared[0].shape[0] < 2 else declared
    outputs = _runs(built, traced, declared)
    names = Names(list(built.spec.head.inputs), list(outputs))
    start = time.perf_counter()
    program = trace(built, traced, dynamic_batch)
    ports = _ports(program, names)
    data = _pt2_bytes(program, built, source) if format == "pt2" else _onnx_bytes(built, program, traced, names, source)
    seconds = time.perf_counter() - start
    exported = Exported(
        path=str(path), format=format, bytes=len(data), parameters=sum(p.numel() for p in model.parameters()),
        inputs=ports[0], outputs=ports[1], export_seconds=seconds,
        tolerance=TOLERANCE.get(built.dtype, DEFAULT_TOLERANCE),
    )  # fmt: skip
    if check:
        exported = _checked(exported, built, data, declared, dynamic_batch)
    with output.replacing(output.check_output(path, "-o", KINDS[format]), Loc(f"-o {path}"), KINDS[format]) as out:
        out.write(data)
    return exported


def _refuse_meta(built: Built) -> None:
    if built.device.type == "meta":
        from_spec = built.spec.head.device == "meta"
        raise InputError("cannot export on the meta device: it holds no weights to write (use --device cpu)",
                         built.spec.loc(("device",)) if from_spec else Loc("--device meta"))  # fmt: skip


def require_onnx(check: bool) -> None:
    missing = missing_onnx_packages(check)
    if missing:
        raise InputError(f"needs the optional packages {', '.join(ONNX_PACKAGES)} (missing: {', '.join(missing)}): "
                         f"{ONNX_EXTRA}", Loc("--format onnx"))  # fmt: skip


def _runs(built: Built, inputs: tuple[torch.Tensor, ...], declared: tuple[torch.Tensor, ...]) -> dict:
    """The model's outputs by name on the inputs it is to be traced with: a failure here, on a
    batch larger than the spec's, says that the batch cannot be dynamic."""
    tracker = None
    try:
        with torch.no_grad(), tracking(built.model) as tracker:
            return named_outputs(built.model(*inputs), built.spec.model)
    except TORCH_FAILURES as exc:
        grown = inputs[0].shape[0] != declared[0].shape[0]
        context = (f"with a batch of {inputs[0].shape[0]} (so the batch cannot be dynamic: export with --static-batch)"
                   if grown else "on its sample input")  # fmt: skip
        if tracker is not None and tracker.failed is not None:
            raise layer_failure(built, tracker.failed, exc, context) from exc
        raise BuildError(f"the model failed {context}: {first_line(exc)}", built.spec.loc(("model",))) from exc


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """PyTorch's exporters log warnings and progress and print graphs: none of it reaches netcfg's output."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),  # torch.export prints a failed trace's graph there itself
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def trace(built: Built, inputs: tuple[torch.Tensor, ...], dynamic_batch: bool) -> torch.export.ExportedProgram:
    """torch.export's program of the model; a failure is one error naming the layer that was being traced."""
    shapes = _dynamic_shapes(built.model, inputs) if dynamic_batch else None
    tracker = None
    try:
        with quiet(), torch.no_grad(), tracking(built.model) as tracker:
            return torch.export.export(built.model, inputs, dynamic_shapes=shapes)
    except (*TORCH_FAILURES, AssertionError) as exc:
        if _specialized(exc):
            raise BuildError(
                f"the batch dimension cannot be dynamic: the model fixes it to {inputs[0].shape[0]} while exporting "
                "(export with --static-batch)",
                built.spec.loc(("model",)),
            ) from exc
        if tracker is not None and tracker.failed is not None:
            reason = _Innermost(_DATA_DEPENDENT + first_line(exc)) if _data_dependent(exc) else exc
            raise layer_failure(built, tracker.failed, reason, "while exporting") from exc
        raise BuildError(f"the model could not be exported: {_message(exc)}", built.spec.loc(("model",))) from exc


_DATA_DEPENDENT = "its control flow depends on tensor values, which torch.export cannot trace: "


def _data_dependent(exc: BaseException) -> bool:
    return "data-dependent" in first_line(exc)


def _specialized(exc: BaseException) -> bool:
    return "Constraints violated" in str(exc) and "specialized it to be a constant" in str(exc)


def _message(exc: BaseException) -> str:
    """The innermost cause's first line: exporters wrap the real reason in advice."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return first_line(exc)


def _provenance(built: Built, source: str) -> dict[str, str]:
    from netcfg.actions.checkpoint import canonical
    from netcfg.version import __version__

    spec_json = canonical(built.spec.data)
    return {
        "netcfg.version": __version__,
        "torch.version": torch.__version__,
        "netcfg.source": source,
        "netcfg.spec": spec_json,
        "netcfg.spec_sha256": hashlib.sha256(spec_json.encode()).hexdigest(),
        "netcfg.seed": str(built.seed),
    }


def _pt2_bytes(program: torch.export.ExportedProgram, built: Built, source: str) -> bytes:
    buffer = io.BytesIO()
    try:
        with quiet():
            torch.export.save(program, buffer, extra_files={MARKER: json.dumps(_provenance(built, source))})
    except TORCH_FAILURES as exc:
        raise BuildError(f"the exported program could not be saved: {_message(exc)}",
                         built.spec.loc(("model",))) from exc  # fmt: skip
    return buffer.getvalue()


def _onnx_bytes(
    built: Built, program: torch.export.ExportedProgram, inputs: tuple[torch.Tensor, ...], names: Names, source: str
) -> bytes:
    try:
        with quiet():
            onnx_program = torch.onnx.export(program, inputs, dynamo=True, verbose=False, input_names=names.inputs,
                                             output_names=names.outputs)  # fmt: skip
            proto = onnx_program.model_proto
    except (*TORCH_FAILURES, AssertionError) as exc:
        raise _onnx_failure(built, program, exc) from exc
    _name_batch(proto, _batch_symbol(program))
    meta = _provenance(built, source)
    proto.doc_string = f"{MARKER} {meta['netcfg.spec_sha256']}: exported by netcfg {meta['netcfg.version']}"
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    if proto.ByteSize() > ONNX_MAX:
        raise BuildError(f"the ONNX model is {proto.ByteSize():,} bytes, over protobuf's 2 GiB limit on one file "
                         "(netcfg writes no external data files: export to .pt2)",
                         built.spec.loc(("model",)))  # fmt: skip
    return proto.SerializeToString()


def _batch_symbol(program: torch.export.ExportedProgram) -> str:
    """The name the tracer gave the dynamic batch (s17), '' when it is static."""
    first = program.graph_signature.user_inputs[:1]
    value = next((node.meta["val"] for node in program.graph.nodes if node.name in first), None)
    size = value.shape[0] if value is not None and value.dim() else 0
    return "" if isinstance(size, int) else str(size)


def _name_batch(proto, symbol: str) -> None:
    """ONNX dimension names say 'batch' (3*batch), not the tracer's s17, to whoever reads the file."""
    if not symbol:
        return
    for value in [*proto.graph.input, *proto.graph.output, *proto.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = _spelled(dim.dim_param, symbol)


def _onnx_failure(built: Built, program: torch.export.ExportedProgram, exc: BaseException) -> BuildError:
    """'layer P (type) failed to export to ONNX: reason', P found from the graph node the exporter names."""
    text = []
    cause: BaseException | None = exc
    while cause is not None:
        text.append(str(cause))
        cause = cause.__cause__
    found = re.search(r"translating node %(\w+) : .*?target=(?:torch\.ops\.)?([\w.]+)", "\n".join(text))
    path = _module_of(program, found.group(1), found.group(2)) if found else None
    if path is not None:
        return layer_failure(built, path, _Innermost(_message(exc)), "to export to ONNX")
    return BuildError(f"the model could not be exported to ONNX: {_message(exc)}", built.spec.loc(("model",)))


class _Innermost(Exception):
    """Carries the innermost cause's line to layer_failure (which prints an exception's first line)."""


def _module_of(program: torch.export.ExportedProgram, node_name: str, target: str) -> str | None:
    """The module that made the failing node. The exporter names a node of its own, decomposed
    graph: the node of that name here counts only if it calls the same operator; otherwise the
    operator's calls here must all come from one module (else no layer is named, rather than a wrong one)."""
    calls = [node for node in program.graph.nodes if str(node.target) == target]
    named = [node for node in calls if node.name == node_name]
    paths = {_innermost(node) for node in (named or calls)}
    return paths.pop() if len(paths) == 1 else None


def _innermost(node) -> str | None:
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else None


# ---------------------------------------------------------------- the check


def _checked(
    exported: Exported, built: Built, data: bytes, declared: tuple[torch.Tensor, ...], dynamic_batch: bool
) -> Exported:
    """Run the artifact (from its bytes) and the eager model on the sample input and, when the
    batch is dynamic, on one more row: the largest difference, and whether it is within tolerance."""
    start = time.perf_counter()
    run = _pt2_runner(data, built) if exported.format == "pt2" else _onnx_runner(data, built)
    batches = [declared[0].shape[0]] + ([declared[0].shape[0] + 1] if dynamic_batch else [])
    checks = []
    for batch in batches:
        inputs = example_inputs(built, batch)
        with torch.no_grad():
            expected = _flat(built.model(*inputs))
        checks.append(_compare(expected, run(inputs), batch, exported.tolerance))
    seconds = time.perf_counter() - start
    failed = [c for c in checks if not c.passed]
    if failed:
        atol, rtol = exported.tolerance
        raise BuildError(
            f"the exported {exported.format} model's output differs from PyTorch's by {failed[0].max_abs_diff:.3g} "
            f"at batch {failed[0].batch} (tolerance {atol:g} + {rtol:g} x {failed[0].scale:.3g}, "
            "its largest |output|): nothing written",
            built.spec.loc(("model",)),
        )
    return dataclasses.replace(exported, check_seconds=seconds, checks=checks)


def _pt2_runner(data: bytes, built: Built):
    with quiet():
        module = torch.export.load(io.BytesIO(data)).module()  # the bytes made above, never a file

    def run(inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        with torch.no_grad(), quiet():
            return _flat(module(*inputs))

    return run


def _onnx_runner(data: bytes, built: Built):
    import onnxruntime

    try:
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings about unused initializers are noise here
        session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own exception classes (Fail, InvalidGraph ...) share no base
        raise BuildError(f"onnxruntime cannot load the exported model (--no-check skips it): {first_line(exc)}",
                         built.spec.loc(("model",))) from exc  # fmt: skip
    names = [i.name for i in session.get_inputs()]

    def run(inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        # strict=False: the exporter drops an input the model never reads
        feed = {name: x.detach().to("cpu").numpy() for name, x in zip(names, inputs, strict=False)}
        try:
            results = session.run(None, feed)
        except Exception as exc:  # as above
            raise BuildError(f"onnxruntime cannot run the exported model (--no-check skips it): {first_line(exc)}",
                             built.spec.loc(("model",))) from exc  # fmt: skip
        return [torch.from_numpy(r) for r in results]

    return run


def _flat(out) -> list[torch.Tensor]:
    """A model's outputs as a list of tensors, in the order exporters flatten them."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for value in out.values() for t in _flat(value)]
    if isinstance(out, (tuple, list)):
        return [t for value in out for t in _flat(value)]
    return []


def _compare(expected: list[torch.Tensor], got: list[torch.Tensor], batch: int, tolerance: tuple) -> Check:
    if len(expected) != len(got):
        return Check(batch, math.inf, False)
    worst, scale, passed = 0.0, 0.0, True
    atol, rtol = tolerance
    for want, have in zip(expected, got, strict=True):
        want, have = _comparable(want), _comparable(have)
        if want.shape != have.shape:
            return Check(batch, math.inf, False)
        if not want.numel():
            continue
        same = (want == have) | (torch.isnan(want) & torch.isnan(have))  # the same inf or NaN: no difference
        diff = torch.where(same, 0.0, (want - have).abs())
        largest = float(diff.max())  # NaN where only one side is NaN: kept (Python's max would drop it)
        worst = math.nan if math.isnan(largest) or math.isnan(worst) else max(worst, largest)
        finite = want[torch.isfinite(want)].abs()
        size = float(finite.max()) if finite.numel() else 0.0
        scale = max(scale, size)
        passed = passed and bool((diff <= atol + rtol * size).all())
    return Check(batch, worst, passed, scale)


def _comparable(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().to("cpu")
    if t.is_complex():
        t = torch.view_as_real(t)
    return t.to(torch.float64)
