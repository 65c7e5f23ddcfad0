"""Checkpoints: self-describing safetensors files that keep ties and never lose data.

A checkpoint holds every parameter and persistent buffer once (tied tensors and shared
modules are stored under their first name), and in its metadata the resolved spec
(canonical JSON) with its sha256, the ties, and the netcfg and torch versions, so
`load(path)` rebuilds the exact model from the file alone. Writes are atomic (see
netcfg.io.tensor_files); reads check the header first (netcfg.io.safetensors_header) and never
unpickle anything.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

import torch
from torch import nn

from netcfg.actions.model import checksum_all, forward
from netcfg.building import devices, ties
from netcfg.building.builder import Built, build_spec
from netcfg.errors import CheckpointError, Diagnostic, InputError, Loc
from netcfg.io.reading import SAFETENSORS_NAMES, TORCH_DTYPES, mapped, read_tensors
from netcfg.io.safetensors_header import Header, read_header
from netcfg.io.tensor_files import write_tensors
from netcfg.spec.loader import load_spec_data, read_json
from netcfg.spec.model import Spec

CHECKPOINT_FORMAT = 1
KEY_FORMAT = "netcfg.checkpoint_format"
KEY_SPEC = "netcfg.spec"
KEY_HASH = "netcfg.spec_sha256"
KEY_TIES = "netcfg.ties"
KEY_FROZEN = "netcfg.frozen"


def canonical(data: dict) -> str:
    # Key order is kept, not sorted: a graph's nodes run in the order they are written.
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


# ---------------------------------------------------------------- names and ties


def alias_groups(model: nn.Module) -> list[list[str]]:
    """state_dict names grouped by the tensor they hold (ties, shared modules), in order."""
    by_id: dict[int, list[str]] = {}
    for name, tensor in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(tensor), []).append(name)
    for name, tensor in model.named_buffers(remove_duplicate=False):
        by_id.setdefault(id(tensor), []).append(name)
    persistent = set(model.state_dict(keep_vars=True))
    groups = [[n for n in names if n in persistent] for names in by_id.values()]
    return [g for g in groups if g]


def _order(model: nn.Module, groups: list[list[str]]) -> list[list[str]]:
    position = {name: i for i, name in enumerate(model.state_dict(keep_vars=True))}
    return sorted(groups, key=lambda g: position[g[0]])


# ---------------------------------------------------------------- save


@dataclass(frozen=True)
class Saved:
    path: str
    tensors: int
    bytes: int
    parameters: int
    ties: list[list[str]]
    spec_sha256: str


def metadata_for(built: Built, groups: list[list[str]]) -> dict[str, str]:
    from netcfg.version import __version__

    # The seed actually used (a --seed flag included), so `load --check` feeds the same
    # sample input as `run --seed N` and their checksums compare.
    # The seed goes last whatever the spec's order, so a loaded and re-saved model has the same spec text.
    spec_json = canonical({**{k: v for k, v in built.spec.data.items() if k != "seed"}, "seed": built.seed})
    frozen = [n for n, p in built.model.named_parameters() if not p.requires_grad]
    return {
        **({KEY_FROZEN: json.dumps(frozen)} if frozen else {}),
        "format": "pt",
        KEY_FORMAT: str(CHECKPOINT_FORMAT),
        KEY_SPEC: spec_json,
        KEY_HASH: hashlib.sha256(spec_json.encode()).hexdigest(),
        KEY_TIES: json.dumps([g for g in groups if len(g) > 1]),
        "netcfg.version": __version__,
        "torch.version": torch.__version__,
        "netcfg.seed": str(built.seed),
    }


def save(built: Built, path: str | os.PathLike, durable: bool = True) -> Saved:
    """Write the model's weights and buffers, each tensor once, with the spec embedded."""
    if built.device.type == "meta":
        raise InputError("cannot save a model on the meta device: it holds no values (use --device cpu)",
                         Loc("--device meta"))  # fmt: skip
    model = built.model
    groups = _order(model, alias_groups(model))
    state = model.state_dict()
    tensors = {g[0]: state[g[0]] for g in groups}
    meta = metadata_for(built, groups)
    write_tensors(tensors, path, metadata=meta, flag="-o", durable=durable)
    return Saved(
        path=str(path),
        tensors=len(tensors),
        bytes=os.path.getsize(path),
        parameters=sum(p.numel() for p in model.parameters()),
        ties=[g for g in groups if len(g) > 1],
        spec_sha256=meta[KEY_HASH],
    )


# ---------------------------------------------------------------- load


@dataclass
class Loaded:
    built: Built
    header: Header
    problems: list[str] = field(default_factory=list)
    """Mismatches tolerated by a non-strict load."""
    checksum: str | None = None
    nonfinite: dict[str, int] = field(default_factory=dict)
    """Tensor name -> count of NaN/Inf values (filled by check=True)."""
    tensors_loaded: int = 0


def embedded_spec(header: Header) -> Spec:
    meta = header.metadata
    version = meta.get(KEY_FORMAT)
    if version is not None and not (version.isascii() and version.isdigit() and len(version) < 10):
        raise CheckpointError(f"invalid checkpoint format {version!r} in its metadata", Loc(header.path))
    if version is not None and int(version) > CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"written in netcfg checkpoint format {version}; this netcfg reads format {CHECKPOINT_FORMAT}: "
            "upgrade netcfg",
            Loc(header.path),
        )
    if KEY_SPEC not in meta:
        raise CheckpointError("holds no netcfg spec (not saved by netcfg): pass --config SPEC", Loc(header.path))
    where = f"{header.path} (embedded spec)"
    # The limits of a spec file: its size and number of values before it is parsed, no repeated key.
    data = _json_field(header, meta[KEY_SPEC], dict, "its embedded spec", lambda text: read_json(text, where))
    text = meta[KEY_SPEC].encode()
    if KEY_HASH in meta and hashlib.sha256(text).hexdigest() != meta[KEY_HASH]:
        raise CheckpointError("its embedded spec does not match its recorded sha256 (edited or corrupt)",
                              Loc(header.path))  # fmt: skip
    return load_spec_data(data, where)


def load(
    path: str | os.PathLike,
    spec: Spec | None = None,
    device: str | None = None,
    strict: bool = True,
    check: bool = False,
) -> Loaded:
    """Rebuild the model a checkpoint describes (or `spec`) and load its tensors."""
    header = read_header(path)
    spec = spec or embedded_spec(header)
    skeleton = build_spec(spec, device="meta")
    problems = compare(skeleton.model, header)
    if problems and strict:
        raise CheckpointError([Diagnostic(Loc(header.path), p) for p in problems])
    if strict:
        built = _materialize(skeleton, spec, header, device)
        count = 0 if built.device.type == "meta" else len(header.tensors)
    else:
        built = build_spec(spec, device=device)
        count = _copy_matching(built.model, header, problems)
    _restore_frozen(built.model, header)
    loaded = Loaded(built, header, problems if not strict else [], tensors_loaded=count)
    if check:
        _check(loaded)
    return loaded


def _restore_frozen(model: nn.Module, header: Header) -> None:
    """Parameters saved frozen (trainable: false, or frozen by a pretrained: entry) stay frozen."""
    names = _json_field(header, header.metadata.get(KEY_FROZEN), list, "its frozen parameters") or []
    params = dict(model.named_parameters())
    for name in names:
        if isinstance(name, str) and name in params:
            params[name].requires_grad_(False)


def compare(model: nn.Module, header: Header) -> list[str]:
    """Every difference between the model's state_dict and the file, as one line each."""
    expected = model.state_dict(keep_vars=True)
    groups = alias_groups(model)
    problems = []
    covered = set()
    for group in groups:
        covered.update(group)
        present = [n for n in group if n in header.tensors]
        if not present:
            names = " = ".join(f"'{n}'" for n in group)
            t = expected[group[0]]
            problems.append(f"missing tensor {names} {list(t.shape)} {_dt(t.dtype)}")
            continue
        for name in present:
            problems += _mismatch(name, expected[name], header)
    for name in header.tensors:
        if name not in covered:
            info = header.tensors[name]
            problems.append(f"unexpected tensor '{name}' {list(info.shape)} {_file_dt(info.dtype)} (not in the model)")
    return problems


def _mismatch(name: str, tensor: torch.Tensor, header: Header) -> list[str]:
    info = header.tensors[name]
    problems = []
    if tuple(tensor.shape) != info.shape:
        problems.append(
            f"tensor '{name}' has shape {list(info.shape)} in the file, the model needs {list(tensor.shape)}"
        )
    if SAFETENSORS_NAMES.get(tensor.dtype) != info.dtype:
        problems.append(f"tensor '{name}' is {_file_dt(info.dtype)} in the file, the model needs {_dt(tensor.dtype)}")
    return problems


_dt = devices.dtype_name


def _file_dt(name: str) -> str:
    """A safetensors dtype name in torch's spelling (F32 -> float32), as the model side is written."""
    return _dt(TORCH_DTYPES[name]) if name in TORCH_DTYPES else name


def load_into(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a checkpoint's tensors into an existing model, in place, strictly.

    Each tensor is copied from a memory map of the file straight into the parameter's own
    memory (one copy, as safetensors.torch.load_model does); ties stay ties."""
    header = read_header(path)
    problems = compare(model, header)
    if problems:
        raise CheckpointError([Diagnostic(Loc(header.path), p) for p in problems])
    state = model.state_dict(keep_vars=True)
    with mapped(header) as views, torch.no_grad():
        for group in alias_groups(model):
            source = views[next(n for n in group if n in header.tensors)]()
            state[group[0]].copy_(source)


def _materialize(skeleton: Built, spec: Spec, header: Header, device: str | None) -> Built:
    """Put the file's tensors into the meta skeleton (no initialization is ever computed)."""
    where = Loc(f"--device {device}") if device else spec.loc(("device",))
    target, note = devices.resolve(device or spec.head.device, where)
    model = skeleton.model
    groups = alias_groups(model)
    if target.type == "meta":
        skeleton.device, skeleton.device_note = target, note
        return skeleton
    tensors = read_tensors(header, target)
    conflicts = _tie_conflicts(groups, tensors)
    if conflicts:
        raise CheckpointError([Diagnostic(Loc(header.path), c) for c in conflicts])
    state = {}
    for group in groups:
        source = tensors[next(n for n in group if n in header.tensors)]
        for name in group:
            state[name] = source
    model.load_state_dict(state, strict=True, assign=True)
    ties.tie(model, [g for g in groups if len(g) > 1 and _all_params(model, g)])
    skeleton.device, skeleton.device_note = target, note
    return skeleton


def _all_params(model: nn.Module, names: list[str]) -> bool:
    params = dict(model.named_parameters(remove_duplicate=False))
    return all(n in params for n in names)


def _tie_conflicts(groups: list[list[str]], tensors: dict) -> list[str]:
    """Paths of one tied tensor stored more than once must hold the same values."""
    problems = []
    for group in groups:
        present = [n for n in group if n in tensors]
        for name in present[1:]:
            if not torch.equal(tensors[present[0]], tensors[name]):
                problems.append(f"tensors '{present[0]}' and '{name}' are one tied tensor in the model, "
                                "but differ in the file")  # fmt: skip
    return problems


def _copy_matching(model: nn.Module, header: Header, problems: list[str]) -> int:
    """Non-strict: copy every tensor whose name, shape and dtype fit; keep the rest as initialized."""
    expected = model.state_dict()
    device = next((t.device for t in expected.values()), torch.device("cpu"))
    wanted = [
        n for n, info in header.tensors.items()
        if n in expected and info.shape == tuple(expected[n].shape)
        and info.dtype == SAFETENSORS_NAMES.get(expected[n].dtype)
    ]  # fmt: skip
    tensors = read_tensors(header, device, wanted)
    problems += _tie_conflicts(alias_groups(model), tensors)
    model.load_state_dict(tensors, strict=False)
    return len(tensors)


def _check(loaded: Loaded) -> None:
    built = loaded.built
    check_weights(loaded)
    if built.device.type != "meta":
        loaded.checksum = checksum_all(forward(built)[1])


def check_weights(loaded: Loaded) -> None:
    """Count the NaN/Inf values of each floating-point tensor (loaded.nonfinite)."""
    built = loaded.built
    for name, tensor in built.model.state_dict().items():
        if tensor.is_floating_point() and tensor.device.type != "meta":
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                loaded.nonfinite[name] = bad


# ---------------------------------------------------------------- describing a file


@dataclass(frozen=True)
class CheckpointInfo:
    path: str
    size: int
    header_bytes: int
    tensors: list[tuple[str, str, tuple, int]]
    """(name, dtype, shape, bytes) in file order."""
    ties: list[list[str]]
    metadata: dict[str, str]
    spec: dict | None
    parameters_bytes: int


def describe(path: str | os.PathLike) -> CheckpointInfo:
    """What a safetensors file holds, from its header alone (no tensor data is read)."""
    header = read_header(path)
    meta = dict(header.metadata)
    spec = _json_field(header, meta.pop(KEY_SPEC, None), dict, "its embedded spec")
    tie_groups = _json_field(header, meta.pop(KEY_TIES, "[]"), list, "its tie list")
    if not all(isinstance(g, list) and all(isinstance(n, str) for n in g) for g in tie_groups):
        raise CheckpointError("its tie list does not hold lists of tensor names", Loc(header.path))
    rows = [(t.name, t.dtype, t.shape, t.nbytes) for t in sorted(header.tensors.values(), key=lambda t: t.start)]
    return CheckpointInfo(
        path=str(path), size=header.size, header_bytes=header.header_size, tensors=rows, ties=tie_groups,
        metadata=meta, spec=spec, parameters_bytes=sum(r[3] for r in rows),
    )  # fmt: skip


def _json_field(header: Header, text: str | None, kind: type, what: str, parse=json.loads):
    if text is None:
        return None
    try:
        value = parse(text)
    except ValueError:
        raise CheckpointError(f"{what} is not valid JSON", Loc(header.path)) from None
    except RecursionError:
        raise CheckpointError(f"{what} nests too deeply", Loc(header.path)) from None
    if not isinstance(value, kind):
        raise CheckpointError(f"{what} is not a JSON {'object' if kind is dict else 'list'}", Loc(header.path))
    return value
