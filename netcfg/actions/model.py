"""Build and run actions: load a spec, build it, run the sample input. Return data."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import nn

from netcfg.actions.failures import TORCH_FAILURES, first_line, layer_failure, no_layer_failure, tracking
from netcfg.building import devices, memory, memplan
from netcfg.building.builder import Built, build_spec, sample_input
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
    input_shape: tuple
    input_dtype: str
    output: torch.Tensor
    checksum: str
    """sha256 of the output bytes (first 16 hex digits): equal outputs, equal checksums."""
    warnings: list[str]


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
    inputs: torch.Tensor | None = None,
    memory_check: bool = True,
    input_where: Loc | None = None,
) -> RunResult:
    planned = inputs is None or _same_input(spec, inputs)  # the sample input's plan is the build's
    built = build_model(spec, device=device, seed=seed, memory_check=memory_check, forward_check=planned)
    if built.device.type == "meta":
        where = Loc(f"--device {device}") if device else spec.loc(("device",))
        raise InputError("cannot run on the meta device: it holds no values (use validate or inspect)", where)
    if memory_check and not planned:
        check_input_memory(built, inputs, input_where)
    x, out = forward(built, inputs, input_where)
    dtype = devices.dtype_name(x.dtype)
    return RunResult(summarize(built), tuple(x.shape), dtype, out, checksum(out), list(built.warnings))


def _same_input(spec: Spec, x: torch.Tensor) -> bool:
    declared = spec.head.input
    return list(x.shape) == list(declared.shape) and (
        x.is_floating_point() or devices.dtype_name(x.dtype) == declared.dtype
    )


def check_input_memory(built: Built, x: torch.Tensor, where: Loc | None) -> None:
    """Refuse an input whose forward pass would not fit in the device's free memory with the
    model (already built): its activations are planned on a meta build for its shape. An input the
    model cannot take is left to the forward pass, which says why."""
    from netcfg.spec.loader import load_spec_data

    spec = built.spec
    declared = dict(spec.data["input"], shape=list(x.shape))
    if not x.is_floating_point():
        declared["dtype"] = devices.dtype_name(x.dtype)
    try:
        planned = build_spec(load_spec_data({**spec.data, "input": declared}, spec.file), device="meta")
    except NetcfgError:
        return
    free = memory.available(built.device)
    if free is None:
        return
    weights = sum(t.numel() * t.element_size() for t in [*built.model.parameters(), *built.model.buffers()])
    held = weights + (x.numel() * x.element_size() if x.device == built.device else 0)  # allocated already
    memplan.check(planned.visits, built.dtype.itemsize, weights, free + held, built.device, spec, where)


def forward(
    built: Built, inputs: torch.Tensor | None = None, where: Loc | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, output) of one eval-mode forward pass on `inputs` (from `where`) or the sample input.

    PyTorch's failure is one error: on the sample input, naming the layer that raised (where
    the spec defines it); on a user's input (`run --input`), naming the flag."""
    x = sample_input(built.spec, built.device, built.seed) if inputs is None else inputs
    built.model.eval()
    tracker = None
    try:
        x = x.to(built.device)
        if x.is_floating_point() and built.dtype != x.dtype:
            x = x.to(built.dtype)
        with torch.no_grad(), tracking(built.model) as tracker:
            return x, built.model(x)
    except TORCH_FAILURES as exc:
        declared = built.spec.head.input
        shown = f"{list(x.shape)} {devices.dtype_name(x.dtype)}"
        if inputs is None:
            first = _ids_out_of_range(built.model, x)
            if tracker is None or tracker.failed is None:
                raise no_layer_failure(exc, f"--device {built.device}", f"on {built.device}") from exc
            if first is not None:
                raise BuildError(f"running the model on its sample input failed: {first}",
                                 built.spec.loc(("model",))) from exc  # fmt: skip
            raise layer_failure(built, tracker.failed, exc, f"on {built.device} with the sample input {shown}") from exc
        first = _ids_out_of_range(built.model, x) or first_line(exc)
        raise InputError(
            f"the model cannot take an input {shown} (its spec declares {declared.shape} {declared.dtype}): {first}",
            where,
        ) from exc


_IDS = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)  # those torch takes min and max of


def _ids_out_of_range(model: nn.Module, x: torch.Tensor) -> str | None:
    """PyTorch says 'index out of range in self' for a token id past an embedding's rows: say which."""
    if x.dtype not in _IDS or not x.numel():
        return None
    rows = [m.num_embeddings for m in model.modules() if type(m) is nn.Embedding]  # not positions
    low, high = int(x.min()), int(x.max())
    if rows and (low < 0 or high >= min(rows)):
        return f"token ids lie in [{low}, {high}], outside [0, {min(rows)}) of an embedding with {min(rows)} rows"
    return None


def checksum(t: torch.Tensor) -> str:
    data = t.detach().to("cpu").contiguous()
    if data.is_complex():
        data = torch.view_as_real(data)
    # a fresh 1-D copy: a size-1 last dimension may carry a stride other than 1, which view() refuses
    flat = torch.empty(data.numel(), dtype=data.dtype).copy_(data.reshape(-1))
    raw = flat.view(torch.uint8) if data.numel() else torch.empty(0, dtype=torch.uint8)
    return hashlib.sha256(bytes(raw.numpy())).hexdigest()[:16]


def read_input(path: str) -> torch.Tensor:
    """The input tensor of `run --input FILE.safetensors`: its only tensor, or the one named 'input'.

    Only that tensor is read, after its size is checked against the free memory. uint16, uint32
    and uint64, which torch computes little with (no min, no matmul, no embedding lookup), are
    read as int64, which holds their values (a uint64 value past 2**63-1 is refused)."""
    from netcfg.io.reading import read_tensors
    from netcfg.io.safetensors_header import read_header

    where = Loc(f"--input {path}")
    try:
        header = read_header(path)  # netcfg's own checked reader: never a pickle, never a blocking pipe
        names = list(header.tensors)
        if len(names) != 1 and "input" not in header.tensors:
            raise InputError(f"{len(names)} tensors and none named 'input' ({', '.join(sorted(names))})", where)
        name = names[0] if len(names) == 1 else "input"
        tensor = read_tensors(header, torch.device("cpu"), [name])[name]
    except CheckpointError as exc:
        raise InputError(exc.diagnostics[0].message, where) from None
    return _widened(tensor, where)


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
