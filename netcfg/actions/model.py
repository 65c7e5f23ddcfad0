"""Build and run actions: load a spec, build it, run the sample input. Return data."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import nn

from netcfg.actions.failures import TORCH_FAILURES, first_line, layer_failure, no_layer_failure, tracking
from netcfg.building import devices
from netcfg.building.builder import Built, build_spec, sample_input
from netcfg.errors import BuildError, CheckpointError, InputError, Loc
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
    spec: Spec, device: str | None = None, seed: int | None = None, dtype: str | None = None, memory_check: bool = True
) -> Built:
    """Build and initialize, then load the spec's `pretrained:` checkpoints."""
    from netcfg.actions import pretrained

    built = build_spec(spec, device=device, seed=seed, dtype=dtype, memory_check=memory_check)
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
    built = build_model(spec, device=device, seed=seed, memory_check=memory_check)
    if built.device.type == "meta":
        where = Loc(f"--device {device}") if device else spec.loc(("device",))
        raise InputError("cannot run on the meta device: it holds no values (use validate or inspect)", where)
    x, out = forward(built, inputs, input_where)
    dtype = devices.dtype_name(x.dtype)
    return RunResult(summarize(built), tuple(x.shape), dtype, out, checksum(out), list(built.warnings))


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


def _ids_out_of_range(model: nn.Module, x: torch.Tensor) -> str | None:
    """PyTorch says 'index out of range in self' for a token id past an embedding's rows: say which."""
    if x.is_floating_point() or x.is_complex() or not x.numel():
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
    raw = data.reshape(-1).view(torch.uint8) if data.numel() else torch.empty(0, dtype=torch.uint8)
    return hashlib.sha256(bytes(raw.numpy())).hexdigest()[:16]


def read_input(path: str) -> torch.Tensor:
    """The input tensor of `run --input FILE.safetensors`: its only tensor, or the one named 'input'."""
    from netcfg.io.reading import load_tensors

    where = Loc(f"--input {path}")
    try:
        tensors = load_tensors(path)  # netcfg's own checked reader: never a pickle, never a blocking pipe
    except CheckpointError as exc:
        raise InputError(exc.diagnostics[0].message, where) from None
    if isinstance(tensors, torch.Tensor):
        return tensors
    if isinstance(tensors, list):
        tensors = {str(i): t for i, t in enumerate(tensors)}
    if len(tensors) == 1:
        return next(iter(tensors.values()))
    if "input" in tensors:
        return tensors["input"]
    raise InputError(f"{len(tensors)} tensors and none named 'input' ({', '.join(sorted(tensors))})", where)
