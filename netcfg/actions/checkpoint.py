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
from netcfg.io.reading import SAFETENSORS_NAMES, TORCH_DTYPES, TensorSource, open_checkpoint
from netcfg.io.shards import KEY_SET, Checkpoint, file_order, read_checkpoint
from netcfg.io.tensor_files import shard_folder, write_sharded, write_tensors
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
    shards: list[str] = field(default_factory=list)
    """The shard files beside the index (a sharded save)."""
    warnings: list[str] = field(default_factory=list)
    """The build's (a sharded save's: the caller's build printed none)."""


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


def save(built: Built, path: str | os.PathLike, durable: bool = True, max_shard_size: int | None = None) -> Saved:
    """Write the model's weights and buffers, each tensor once, with the spec embedded: one file,
    or with `max_shard_size` an index (`path`, NAME.safetensors.index.json) and its shards."""
    if built.device.type == "meta":
        raise InputError("cannot save a model on the meta device: it holds no values (use --device cpu)",
                         Loc("--device meta"))  # fmt: skip
    model = built.model
    groups, tensors, meta = saved_state(built)
    names = []
    if max_shard_size is None:
        write_tensors(tensors, path, metadata=meta, flag="-o", durable=durable)
    else:
        names = write_sharded(tensors, path, meta, max_shard_size, flag="-o", durable=durable)
    return saved(path, sum(p.numel() for p in model.parameters()), groups, meta, names)


def saved_state(built: Built) -> tuple[list[list[str]], dict[str, torch.Tensor], dict[str, str]]:
    """What a save writes: the tie groups, each group's tensor under its first name (in state_dict
    order, in the spec's dtype), and the metadata. A model kept in float32 for a float16/bfloat16
    spec (FSDP's master weights) is cast back: the file holds what a one-process build holds."""
    model = built.model
    groups = _order(model, alias_groups(model))
    state = model.state_dict()
    low = built.dtype in (torch.float16, torch.bfloat16)
    tensors = {g[0]: state[g[0]].to(built.dtype) if low and state[g[0]].dtype == torch.float32 else state[g[0]]
               for g in groups}  # fmt: skip
    return groups, tensors, metadata_for(built, groups)


def saved(path, parameters: int, groups: list[list[str]], meta: dict[str, str], shards: list[str]) -> Saved:
    """The report of a save just written (`shards`: the shard names beside an index)."""
    folder = shard_folder(path)
    return Saved(
        path=str(path),
        tensors=len(groups),
        bytes=os.path.getsize(path) + sum(os.path.getsize(os.path.join(folder, n)) for n in shards),
        parameters=parameters,
        ties=[g for g in groups if len(g) > 1],
        spec_sha256=meta[KEY_HASH],
        shards=shards,
    )


# ---------------------------------------------------------------- saving a model as it is now

MARK = "_netcfg_made"
"""The attribute of a module netcfg built or loaded that says how (its spec and seed)."""


@dataclass(frozen=True)
class Made:
    """What built a module: kept on the module itself, so a deep copy of the module keeps it."""

    spec: Spec
    seed: int

    def __deepcopy__(self, memo) -> Made:
        return self  # immutable: a copy of the module shares it

    def __copy__(self) -> Made:
        return self


def mark(built: Built) -> None:
    """Record on `built.model` the spec and seed that made it (netcfg.build, netcfg.load)."""
    built.model.__dict__[MARK] = Made(built.spec, built.seed)


def made_by(model: nn.Module) -> Made | None:
    made = unwrap(model).__dict__.get(MARK)
    return made if isinstance(made, Made) else None


def unwrap(model: nn.Module) -> nn.Module:
    """The module a torch.compile wrapper holds (its state_dict names start with '_orig_mod.')."""
    import sys

    compiled = getattr(sys.modules.get("torch._dynamo.eval_frame"), "OptimizedModule", None)
    while compiled is not None and isinstance(model, compiled) and isinstance(model._orig_mod, nn.Module):
        model = model._orig_mod
    return model


def as_built(model: nn.Module, spec: Spec, seed: int | None, where: Loc, same_modules: bool = True) -> Built:
    """A Built for saving `model` as it is now, with `spec`: refused, in one line saying what differs,
    unless `load` rebuilds exactly this model from the file. A dtype the whole model was cast to is
    recorded in the spec (load casts too); tensors on any device are saved; a changed name, shape,
    dtype or tie, and with `same_modules` a module of another type or settings (a replaced layer),
    are refused. `same_modules=False` for a hand-written twin, whose modules are its own."""
    model = unwrap(model)
    state = model.state_dict(keep_vars=True)
    on_meta = [n for n, t in state.items() if t.device.type == "meta"]
    if on_meta:
        raise CheckpointError(f"tensor '{on_meta[0]}' is on the meta device: it holds no values to save", where)
    dtype = _one_dtype(state, spec, where)
    if devices.dtype_name(dtype) != spec.head.dtype:  # cast after building: the spec says so, load casts
        spec = load_spec_data({**spec.data, "dtype": devices.dtype_name(dtype)}, spec.file)
    seed = spec.head.seed if seed is None else seed
    skeleton = build_spec(spec, device="meta", seed=seed, memory_check=False)
    differences = _differences(skeleton.model, model, same_modules)
    if differences:
        more = f" (and {len(differences) - 1} more difference(s))" if len(differences) > 1 else ""
        if same_modules:
            why = f"the model no longer matches its spec: {differences[0]}{more}; load would not rebuild it"
            raise CheckpointError(f"{why}: save it with spec= a spec that builds it", where)
        raise CheckpointError(f"the module does not fit the spec's model: {differences[0]}{more}", where)
    device = next((t.device for t in state.values()), torch.device("cpu"))
    return Built(model, spec, device, "", dtype, seed)


def _one_dtype(state: dict, spec: Spec, where: Loc) -> torch.dtype:
    """The one floating-point dtype of the model's tensors (a spec has one), or the spec's."""
    dtypes: dict[torch.dtype, str] = {}
    for name, tensor in state.items():
        if tensor.is_floating_point():
            dtypes.setdefault(tensor.dtype, name)
    if len(dtypes) > 1:
        listed = ", ".join(f"'{n}' is {_dt(d)}" for d, n in dtypes.items())
        raise CheckpointError(f"the model's tensors have several dtypes ({listed}): a spec has one; cast the whole "
                              "model with model.to(dtype)", where)  # fmt: skip
    if not dtypes:
        return devices.DTYPES[spec.head.dtype]
    (dtype,) = dtypes
    if dtype not in FLOAT_DTYPES:
        raise CheckpointError(f"the model's tensors are {_dt(dtype)}; a spec's dtype is one of "
                              f"{', '.join(map(_dt, FLOAT_DTYPES))}", where)  # fmt: skip
    return dtype


FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def _differences(expected: nn.Module, model: nn.Module, same_modules: bool) -> list[str]:
    """What `model` has that the spec's model (`expected`, on meta) has not, one line each."""
    want, have = expected.state_dict(keep_vars=True), model.state_dict(keep_vars=True)
    out = _module_differences(expected, model) if same_modules else []  # a replaced layer, said as such
    out += [f"'{n}' is missing (the spec makes it {_described(want[n])})" for n in want if n not in have]
    out += [f"'{n}' {_described(have[n])} is not in the spec's model" for n in have if n not in want]
    for name in (n for n in want if n in have):
        if want[name].shape != have[name].shape or want[name].dtype != have[name].dtype:
            out.append(f"'{name}' is {_described(have[name])}, the spec makes {_described(want[name])}")
    return out + _tie_differences(expected, model)


def _described(t: torch.Tensor) -> str:
    return f"{_dt(t.dtype)} {list(t.shape)}"


def _tie_differences(expected: nn.Module, model: nn.Module) -> list[str]:
    want = {frozenset(g) for g in alias_groups(expected) if len(g) > 1}
    have = {frozenset(g) for g in alias_groups(model) if len(g) > 1}
    out = [f"{_names(g)} are no longer one tied tensor (the spec ties them)" for g in want - have]
    return out + [f"{_names(g)} are one tensor, the spec makes them separate" for g in have - want]


def _names(group) -> str:
    return " and ".join(f"'{n}'" for n in sorted(group))


def _module_differences(expected: nn.Module, model: nn.Module) -> list[str]:
    """A module of another type or settings (extra_repr) at a path: load would build the spec's."""
    want = dict(expected.named_modules(remove_duplicate=False))
    have = dict(model.named_modules(remove_duplicate=False))
    out = []
    for path, module in want.items():
        other = have.get(path)
        if other is None:
            out.append(f"module '{path}' ({_module(module)}) is missing")
        elif (type(other), other.extra_repr()) != (type(module), module.extra_repr()):
            out.append(f"module '{path or '(root)'}' is {_module(other)}, the spec makes {_module(module)}")
    return out + [f"module '{p}' ({_module(m)}) is not in the spec's model" for p, m in have.items() if p not in want]


def _module(m: nn.Module) -> str:
    return f"{type(m).__name__}({m.extra_repr()})"


# ---------------------------------------------------------------- load


@dataclass
class Loaded:
    built: Built
    header: Checkpoint
    """The file's or the index's and its shards' headers."""
    problems: list[str] = field(default_factory=list)
    """Mismatches tolerated by a non-strict load."""
    checksum: str | None = None
    nonfinite: dict[str, int] = field(default_factory=dict)
    """Tensor name -> count of NaN/Inf values (filled by check=True)."""
    tensors_loaded: int = 0
    """File tensors whose values were loaded."""
    model_tensors: int = 0
    """The model's tensors (a tied tensor once)."""
    model_tensors_loaded: int = 0
    """Of those, the ones whose values came from the file (all of them when strict)."""


def embedded_spec(header: Checkpoint) -> Spec:
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
    if KEY_SPEC not in meta and KEY_SET in meta:
        raise CheckpointError("one shard of a sharded checkpoint: load its index (NAME.safetensors.index.json)",
                              Loc(header.path))  # fmt: skip
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
    """Rebuild the model a checkpoint (a file, or an index and its shards) describes (or `spec`)
    and load its tensors. Every header is checked, and compared with the model, before a tensor
    is read; each tensor is then read into the memory it keeps (peak: the model's size)."""
    with open_checkpoint(path) as source:
        header = source.checkpoint
        spec = spec or embedded_spec(header)
        skeleton = build_spec(spec, device="meta")
        problems = compare(skeleton.model, header)
        if problems and strict:
            raise CheckpointError([Diagnostic(Loc(header.path), p) for p in problems])
        groups = len(alias_groups(skeleton.model))
        if strict:
            built = _materialize(skeleton, spec, source, device)
            count, filled = (0, 0) if built.device.type == "meta" else (len(header.tensors), groups)
        else:
            built = build_spec(spec, device=device)
            count, filled = _copy_matching(built.model, source, problems)
    _restore_frozen(built.model, header)
    loaded = Loaded(built, header, problems if not strict else [], tensors_loaded=count, model_tensors=groups,
                    model_tensors_loaded=filled)  # fmt: skip
    if check:
        _check(loaded)
    return loaded


def _restore_frozen(model: nn.Module, header: Checkpoint) -> None:
    """Parameters saved frozen (trainable: false, or frozen by a pretrained: entry) stay frozen."""
    names = _json_field(header, header.metadata.get(KEY_FROZEN), list, "its frozen parameters") or []
    params = dict(model.named_parameters())
    for name in names:
        if isinstance(name, str) and name in params:
            params[name].requires_grad_(False)


def compare(model: nn.Module, header: Checkpoint) -> list[str]:
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


def _mismatch(name: str, tensor: torch.Tensor, header: Checkpoint) -> list[str]:
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

    Every name, shape and dtype is compared before a tensor is read; each is then read from the
    file (or its shard) straight into the parameter's own memory; ties stay ties."""
    with open_checkpoint(path) as source:
        problems = compare(model, source.checkpoint)
        if problems:
            raise CheckpointError([Diagnostic(Loc(source.path), p) for p in problems])
        state = model.state_dict(keep_vars=True)
        for group in alias_groups(model):
            source.copy_into(next(n for n in group if n in source.tensors), state[group[0]])


def _materialize(skeleton: Built, spec: Spec, source: TensorSource, device: str | None) -> Built:
    """Put the file's tensors into the meta skeleton (no initialization is ever computed)."""
    where = Loc(f"--device {device}") if device else spec.loc(("device",))
    target, note = devices.resolve(device or spec.head.device, where)
    model = skeleton.model
    groups = alias_groups(model)
    if target.type == "meta":
        skeleton.device, skeleton.device_note = target, note
        return skeleton
    header = source.checkpoint
    tensors = source.read(target)
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
        problems += [_conflict(present[0], n) for n in present[1:] if not torch.equal(tensors[present[0]], tensors[n])]
    return problems


def _conflict(first: str, other: str) -> str:
    return f"tensors '{first}' and '{other}' are one tied tensor in the model, but differ in the file"


def _copy_matching(model: nn.Module, source: TensorSource, problems: list[str]) -> tuple[int, int]:
    """Non-strict: copy every tensor whose name, shape and dtype fit, one at a time into the
    model's memory; keep the rest as initialized. The numbers of file tensors loaded and of
    model tensors (a tied one once) filled."""
    expected = model.state_dict(keep_vars=True)

    def fits(name: str) -> bool:
        info = source.tensors.get(name)
        return name in expected and info is not None and info.shape == tuple(expected[name].shape) and (
            info.dtype == SAFETENSORS_NAMES.get(expected[name].dtype))  # fmt: skip

    count = filled = 0
    with torch.no_grad():
        for group in alias_groups(model):
            present = [n for n in group if fits(n)]
            target = expected[group[0]]
            if not present or target.device.type == "meta":
                continue  # meta: checked against the headers, nothing to read
            source.copy_into(present[0], target)
            count += len(present)
            filled += 1
            for other in present[1:]:
                if not torch.equal(source.get_tensor(other).to(target.device), target):
                    problems.append(_conflict(present[0], other))
    return count, filled


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
    shards: list[tuple[str, int, int]] = field(default_factory=list)
    """A sharded checkpoint's files: (name, tensors, bytes), in the index's order."""


def describe(path: str | os.PathLike) -> CheckpointInfo:
    """What a safetensors file or a sharded checkpoint holds, from its headers alone (no tensor
    data is read)."""
    header = read_checkpoint(path)
    meta = dict(header.metadata)
    spec = _json_field(header, meta.pop(KEY_SPEC, None), dict, "its embedded spec")
    tie_groups = _json_field(header, meta.pop(KEY_TIES, "[]"), list, "its tie list")
    if not all(isinstance(g, list) and all(isinstance(n, str) for n in g) for g in tie_groups):
        raise CheckpointError("its tie list does not hold lists of tensor names", Loc(header.path))
    rows = [(n, t.dtype, t.shape, t.nbytes) for n in file_order(header) for t in [header.tensors[n]]]
    shards = [(os.path.basename(h.path), len(h.tensors), h.size) for h in header.files] if header.sharded else []
    return CheckpointInfo(
        path=str(path), size=header.size, header_bytes=header.header_size, tensors=rows, ties=tie_groups,
        metadata=meta, spec=spec, parameters_bytes=sum(r[3] for r in rows), shards=shards,
    )  # fmt: skip


def _json_field(header: Checkpoint, text: str | None, kind: type, what: str, parse=json.loads):
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
