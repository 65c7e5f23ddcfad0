"""Build and run actions: load a spec, build it, run the sample input. Return data."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import torch
from torch import nn

from netcfg.actions.failures import TORCH_FAILURES, first_line, layer_failure, no_layer_failure, tracking
from netcfg.building import devices, memory, memplan
from netcfg.building.builder import Built, build_spec, named_outputs, sample_inputs
from netcfg.errors import BuildError, CheckpointError, InputError, Loc, NetcfgError
from netcfg.spec.model import Spec


@dataclass(frozen=True)
class Summary:
    tree: str
    parameters: int
    """Unique parameters: a tied tensor counts once."""
    entries: int
    """Parameter entries in state_dict() (tied tensors count once per path)."""
    bytes: int
    device: str
    device_note: str
    dtype: str


def summarize(built: Built) -> Summary:
    model = built.model
    unique = list(model.parameters())
    all_entries = list(model.named_parameters(remove_duplicate=False))
    buffers = list(model.buffers())
    size = sum(t.numel() * t.element_size() for t in unique + buffers)
    return Summary(
        tree=str(model),
        parameters=sum(p.numel() for p in unique),
        entries=sum(p.numel() for _, p in all_entries),
        bytes=size,
        device=str(built.device),
        device_note=built.device_note,
        dtype=devices.dtype_name(built.dtype),
    )


@dataclass(frozen=True)
class RunResult:
    summary: Summary
    inputs: dict[str, tuple[tuple, str]]
    """The inputs run on, by name ('input' for one): shape and dtype."""
    outputs: dict[str, torch.Tensor]
    """The outputs by name ('output' for one)."""
    checksum: str
    """sha256 of the output bytes (first 16 hex digits; several outputs: of theirs): equal
    outputs, equal checksums."""
    warnings: list[str]

    @property
    def output(self) -> torch.Tensor:
        """The first (for most models, the only) output."""
        return next(iter(self.outputs.values()))


def build_model(
    spec: Spec,
    device: str | None = None,
    seed: int | None = None,
    dtype: str | None = None,
    memory_check: bool = True,
    forward_check: bool = False,
) -> Built:
    """Build and initialize, then load the spec's `pretrained:` checkpoints. With `memory_check`,
    the weights must fit in the device's free memory; with `forward_check` too, the weights and
    the activations of a forward pass of the sample input together (before it runs)."""
    from netcfg.actions import pretrained

    built = build_spec(
        spec, device=device, seed=seed, dtype=dtype, memory_check=memory_check, forward_check=forward_check
    )
    if spec.head.pretrained:
        built.pretrained = pretrained.apply(built)
        built.warnings += pretrained.overridden_rule_warnings(built)
    return built


def run(
    spec: Spec,
    device: str | None = None,
    seed: int | None = None,
    inputs: list[torch.Tensor] | None = None,
    memory_check: bool = True,
    input_where: Loc | None = None,
) -> RunResult:
    """One eval-mode forward pass on `inputs` (in the spec's input order; from `input_where`) or the
    sample inputs."""
    planned = inputs is None or _same_input(spec, inputs)  # the sample input's plan is the build's
    built = build_model(spec, device=device, seed=seed, memory_check=memory_check, forward_check=planned)
    return run_built(built, inputs, memory_check and not planned, input_where, device)


def run_built(
    built: Built,
    inputs: list[torch.Tensor] | None = None,
    memory_check: bool = True,
    input_where: Loc | None = None,
    device: str | None = None,
) -> RunResult:
    """One eval-mode forward pass of a built (or loaded) model; with `memory_check`, its
    activations for these inputs are planned first and refused past the free memory."""
    spec = built.spec
    if built.device.type == "meta":
        where = Loc(f"--device {device}") if device else spec.loc(("device",))
        raise InputError("cannot run on the meta device: it holds no values (use validate or inspect)", where)
    if memory_check:
        check_input_memory(built, inputs, input_where)
    xs, outs = forward(built, inputs, input_where)
    shown = {name: (tuple(x.shape), devices.dtype_name(x.dtype)) for name, x in zip(spec.head.inputs, xs, strict=True)}
    return RunResult(summarize(built), shown, outs, checksum_all(outs), list(built.warnings))


def _same_input(spec: Spec, xs: list[torch.Tensor]) -> bool:
    return all(
        list(x.shape) == list(declared.shape)
        and (x.is_floating_point() or devices.dtype_name(x.dtype) == declared.dtype)
        for x, declared in zip(xs, spec.head.inputs.values(), strict=True)
    )


def with_inputs(spec: Spec, shapes: dict[str, tuple[list[int], str | None]]) -> Spec:
    """The spec with these inputs' shapes (and dtypes, where not None) instead of its own."""
    from netcfg.spec.loader import load_spec_data

    declared = {name: dict(data) for name, data in _input_data(spec).items()}
    for name, (shape, dtype) in shapes.items():
        declared[name]["shape"] = list(shape)
        if dtype is not None:
            declared[name]["dtype"] = dtype
    data = declared if spec.head.named_inputs else declared["input"]
    changed = load_spec_data({**spec.data, "input": data}, spec.file)
    # the same model: its repeat copies and block instances (FSDP's units), which expanded data no longer shows
    return replace(changed, units=spec.units)


def _input_data(spec: Spec) -> dict[str, dict]:
    return spec.data["input"] if spec.head.named_inputs else {"input": spec.data["input"]}


def check_input_memory(built: Built, xs: list[torch.Tensor] | None, where: Loc | None) -> None:
    """Refuse inputs (None: the sample inputs) whose forward pass would not fit in the device's
    free memory with the model (already built): their activations are planned on a meta build for
    their shapes. An input the model cannot take is left to the forward pass, which says why."""
    spec = built.spec
    visits = built.visits
    if xs is not None:
        shapes = {
            name: (list(x.shape), None if x.is_floating_point() else devices.dtype_name(x.dtype))
            for name, x in zip(spec.head.inputs, xs, strict=True)
        }
        try:
            visits = build_spec(with_inputs(spec, shapes), device="meta").visits
        except NetcfgError:
            return
    free = memory.available(built.device)
    if free is None:
        return
    weights = sum(t.numel() * t.element_size() for t in [*built.model.parameters(), *built.model.buffers()])
    held = weights + sum(x.numel() * x.element_size() for x in xs or () if x.device == built.device)  # allocated
    memplan.check(visits, built.dtype.itemsize, weights, free + held, built.device, spec, where)


def forward(
    built: Built, inputs: list[torch.Tensor] | None = None, where: Loc | None = None
) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
    """(inputs, outputs by name) of one eval-mode forward pass on `inputs` (from `where`) or the
    sample inputs.

    PyTorch's failure is one error: on the sample inputs, naming the layer that raised (where
    the spec defines it); on a user's input (`run --input`), naming the flag."""
    xs = sample_inputs(built.spec, built.device, built.seed) if inputs is None else inputs
    built.model.eval()
    tracker = None
    try:
        xs = [_placed(built, x) for x in xs]
        with torch.no_grad(), tracking(built.model) as tracker:
            return xs, named_outputs(built.model(*xs), built.spec.model)
    except TORCH_FAILURES as exc:
        shown = shown_inputs(built.spec, xs)
        if inputs is None:
            first = _ids_out_of_range(built.model, xs)
            if tracker is None or tracker.failed is None:
                raise no_layer_failure(exc, f"--device {built.device}", f"on {built.device}") from exc
            if first is not None:
                raise BuildError(f"running the model on its sample input failed: {first}",
                                 built.spec.loc(("model",))) from exc  # fmt: skip
            raise layer_failure(built, tracker.failed, exc, f"on {built.device} with the sample input {shown}") from exc
        first = _ids_out_of_range(built.model, xs) or first_line(exc)
        declared = shown_declared(built.spec)
        raise InputError(
            f"the model cannot take an input {shown} (its spec declares {declared}): {first}", where
        ) from exc


def _placed(built: Built, x: torch.Tensor) -> torch.Tensor:
    x = x.to(built.device)
    return x.to(built.dtype) if x.is_floating_point() and built.dtype != x.dtype else x


def shown_inputs(spec: Spec, xs: list[torch.Tensor]) -> str:
    """'[2, 8] float32', or 'ids [2, 8] int64, mask [2, 8] int64' for named inputs."""
    items = [f"{list(x.shape)} {devices.dtype_name(x.dtype)}" for x in xs]
    if not spec.head.named_inputs:
        return items[0]
    return ", ".join(f"{name} {item}" for name, item in zip(spec.head.inputs, items, strict=False))


def shown_declared(spec: Spec) -> str:
    items = [f"{one.shape} {one.dtype}" for one in spec.head.inputs.values()]
    if not spec.head.named_inputs:
        return items[0]
    return ", ".join(f"{name} {item}" for name, item in zip(spec.head.inputs, items, strict=True))


_IDS = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)  # those torch takes min and max of


def _ids_out_of_range(model: nn.Module, xs: list[torch.Tensor]) -> str | None:
    """PyTorch says 'index out of range in self' for a token id past an embedding's rows: say
    which (with several inputs, which one may read which embedding is not known: only for one)."""
    x = xs[0]
    if len(xs) != 1 or x.dtype not in _IDS or not x.numel():
        return None
    rows = [m.num_embeddings for m in model.modules() if type(m) is nn.Embedding]  # not positions
    low, high = int(x.min()), int(x.max())
    if rows and (low < 0 or high >= min(rows)):
        return f"token ids lie in [{low}, {high}], outside [0, {min(rows)}) of an embedding with {min(rows)} rows"
    return None


def checksum_all(outputs: dict[str, torch.Tensor]) -> str:
    """The checksum of one output; of several, of their names and checksums in order."""
    if len(outputs) == 1:
        return checksum(next(iter(outputs.values())))
    lines = "".join(f"{name}:{checksum(t)}\n" for name, t in outputs.items())
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def checksum(t: torch.Tensor) -> str:
    data = t.detach().to("cpu").contiguous()
    if data.is_complex():
        data = torch.view_as_real(data)
    # a fresh 1-D copy: a size-1 last dimension may carry a stride other than 1, which view() refuses
    flat = torch.empty(data.numel(), dtype=data.dtype).copy_(data.reshape(-1))
    raw = flat.view(torch.uint8) if data.numel() else torch.empty(0, dtype=torch.uint8)
    return hashlib.sha256(bytes(raw.numpy())).hexdigest()[:16]


def read_inputs(path: str, spec: Spec) -> list[torch.Tensor]:
    """The inputs of `run --input FILE.safetensors`, in the spec's order: for one unnamed input,
    the file's only tensor or the one named 'input'; for named inputs, the tensors of their names
    (every input given, no other tensor).

    Only those tensors are read, after their sizes are checked against the free memory. uint16,
    uint32 and uint64, which torch computes little with (no min, no matmul, no embedding lookup),
    are read as int64, which holds their values (a uint64 value past 2**63-1 is refused)."""
    from netcfg.io.reading import read_tensors
    from netcfg.io.safetensors_header import read_header

    where = Loc(f"--input {path}")
    try:
        header = read_header(path)  # netcfg's own checked reader: never a pickle, never a blocking pipe
        names = _input_names(list(header.tensors), spec, where)
        tensors = read_tensors(header, torch.device("cpu"), names)
    except CheckpointError as exc:
        raise InputError(exc.diagnostics[0].message, where) from None
    return [_widened(tensors[name], where) for name in names]


def _input_names(found: list[str], spec: Spec, where: Loc) -> list[str]:
    """The file's tensors that are the spec's inputs, in the spec's order."""
    from netcfg.text import quote

    if not spec.head.named_inputs:
        if len(found) != 1 and "input" not in found:
            listed = ", ".join(quote(n) for n in sorted(found)[:20]) + (", ..." if len(found) > 20 else "")
            raise InputError(f"{len(found)} tensors and none named 'input' ({listed})", where)
        return [found[0] if len(found) == 1 else "input"]
    wanted = list(spec.head.inputs)
    missing = [n for n in wanted if n not in found]
    extra = sorted(set(found) - set(wanted))
    problems = []
    if missing:
        problems.append(f"no tensor named {', '.join(repr(n) for n in missing)}")
    if extra:
        listed = ", ".join(quote(n) for n in extra[:20]) + (f" and {len(extra) - 20:,} more" if len(extra) > 20 else "")
        problems.append(f"tensors {listed} are no input of the model")
    if problems:
        raise InputError(f"{'; '.join(problems)} (the model's inputs: {', '.join(wanted)})", where)
    return wanted


_UNSIGNED = (torch.uint16, torch.uint32, torch.uint64)


def _widened(x: torch.Tensor, where: Loc) -> torch.Tensor:
    if x.dtype not in _UNSIGNED:
        return x
    if x.dtype == torch.uint64:
        signed = x.view(torch.int64)  # the same bits: values past 2**63-1 turn negative
        if x.numel() and bool((signed < 0).any()):
            raise InputError("holds uint64 values past 2**63-1: torch computes with uint64 only as int64, "
                             "which cannot hold them", where)  # fmt: skip
        return signed
    from netcfg.io.memory import amount, available

    need, free = x.numel() * 8, available(torch.device("cpu"))
    if free is not None and need > free:
        raise InputError(f"a {str(x.dtype).replace('torch.', '')} input is read as int64, which needs "
                         f"{amount(need)}, more than the {amount(free)} free", where)  # fmt: skip
    return x.to(torch.int64)
