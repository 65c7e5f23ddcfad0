"""The data of a training run: a safetensors file of named tensors, checked against the model.

Every tensor is checked from the file's header first (a tensor for each model input and the
target, of the input's shape past the batch dimension and its dtype, one number of samples),
then read and checked for values (NaN or infinite floats, class ids outside the model's classes,
token ids outside the input's range). Each problem is one line naming the file, the tensor and
what the model needs.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch

from netcfg.building.builder import Built
from netcfg.building.devices import dtype_name
from netcfg.errors import Loc, TrainError
from netcfg.io.files import open_regular
from netcfg.io.reading import TORCH_DTYPES, open_checkpoint
from netcfg.suggest import suggest


@dataclass
class Dataset:
    """Named tensors of one split, sample i being row i of each."""

    inputs: list[torch.Tensor]
    """In the model's input order."""
    target: torch.Tensor

    def __len__(self) -> int:
        return self.target.shape[0]

    def take(self, index: torch.Tensor, device: torch.device) -> tuple[list[torch.Tensor], torch.Tensor]:
        xs = [x[index].to(device, non_blocking=True) for x in self.inputs]
        return xs, self.target[index].to(device, non_blocking=True)

    def subset(self, index: torch.Tensor) -> Dataset:
        return Dataset([x[index] for x in self.inputs], self.target[index])


@dataclass(frozen=True)
class Source:
    """Where a data file came from: its path and the place to blame for its problems."""

    path: str
    where: Loc


def data_source(built: Built, data: str | None) -> Source:
    """The --data file, or the spec's `train.data` relative to the spec file."""
    if data is not None:
        return Source(data, Loc(f"--data {data}"))
    spec = built.spec
    return Source(relative(spec.file, spec.head.train.data), spec.loc(("train", "data")))


def validation_source(built: Built) -> Source | None:
    validation = built.spec.head.train.validation
    if validation is None or validation.file is None:
        return None
    return Source(relative(built.spec.file, validation.file), built.spec.loc(("train", "validation", "file")))


def relative(spec_file: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(os.path.dirname(spec_file) or ".", path)


def fingerprint(path: str) -> str:
    """sha256 of the file's bytes: a resumed run must read the same data."""
    digest = hashlib.sha256()
    with open_regular(path, TrainError, "data file") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tensor_names(built: Built) -> tuple[list[tuple[str, str]], str]:
    """(model input name, tensor name) for each input, and the target's tensor name."""
    train = built.spec.head.train
    names = list(built.spec.head.inputs)
    unknown = [k for k in train.inputs if k not in names]
    if unknown:
        raise TrainError(f"`inputs` names '{unknown[0]}', which is not one of the model's inputs ({', '.join(names)})"
                         f"{suggest(unknown[0], names)}", built.spec.loc(("train", "inputs", unknown[0])))  # fmt: skip
    pairs = [(name, train.inputs.get(name, name)) for name in names]
    return pairs, train.target if train.target is not None else pairs[0][1]


def classes(loss: str, out_shape: tuple) -> int | None:
    """The number of classes of a classification output (cross_entropy: dim 1; next_token: the last)."""
    if loss == "cross_entropy":
        return out_shape[1] if len(out_shape) > 1 else None
    return out_shape[-1] if loss == "next_token" else None


def load(built: Built, source: Source, out_shape: tuple) -> Dataset:
    """The file's tensors for the model's inputs and the target, every check passed."""
    train = built.spec.head.train
    pairs, target_name = tensor_names(built)
    try:
        with open_checkpoint(source.path) as tensors:
            _check_header(built, tensors.tensors, pairs, target_name, source)
            _check_target_shape(train.loss.kind, tensors.tensors[target_name], out_shape, source)
            wanted = list(dict.fromkeys([t for _, t in pairs] + [target_name]))
            read = tensors.read(torch.device("cpu"), wanted)
    except TrainError:
        raise
    except Exception as exc:  # CheckpointError, InputError: unreadable file; one line at the data's place
        message = getattr(exc, "diagnostics", [None])[0]
        raise TrainError(f"cannot read {source.path}: {message.message if message else exc}", source.where) from None
    inputs = [read[t] for _, t in pairs]
    target = read[target_name]
    if train.loss.kind in ("cross_entropy", "next_token"):
        target = target.long()
    count = classes(train.loss.kind, out_shape)
    _check_values(built, dict(zip([n for n, _ in pairs], inputs, strict=True)), target, source, count)
    return Dataset(inputs, target)


def _check_target_shape(loss: str, info, out_shape: tuple, source: Source) -> None:
    """The target's shape past the batch dimension, from the output's."""
    if loss == "cross_entropy":
        need, what = list(out_shape[2:]), "class ids, one per output position"
    elif loss == "next_token":
        need, what = list(out_shape[1:2]), "token ids, one per position"
    else:
        need, what = list(out_shape[1:]), "values of the output's shape"
    if list(info.shape[1:]) != need or not info.shape:
        shown = "[N" + "".join(f", {s}" for s in need) + "]"
        raise TrainError(f"{source.path}: the target '{info.name}' is {_shown(info)}; the {loss} loss on an output "
                         f"{list(out_shape)} needs {shown} ({what})", source.where)  # fmt: skip


def _check_header(built: Built, infos: dict, pairs: list, target_name: str, source: Source) -> None:
    held = list(infos)
    samples: dict[str, int] = {}
    for name, tensor in pairs:
        spec = built.spec.head.inputs[name]
        info = _find(infos, tensor, f"the model's input '{name}'", source, held)
        need = f"[N, {', '.join(str(s) for s in spec.shape[1:])}] {spec.dtype}".replace("[N, ]", "[N]")
        if list(info.shape[1:]) != spec.shape[1:] or len(info.shape) != len(spec.shape) or _dt(info) != spec.dtype:
            raise TrainError(f"{source.path}: tensor '{tensor}' is {_shown(info)}; the model's input '{name}' needs "
                             f"{need}", source.where)  # fmt: skip
        samples[tensor] = info.shape[0]
    target = _find(infos, target_name, "the target", source, held)
    _check_target_type(built, target, source)
    samples[target_name] = target.shape[0] if target.shape else 0
    if len(set(samples.values())) > 1:
        shown = ", ".join(f"'{n}' {k:,}" for n, k in samples.items())
        raise TrainError(f"{source.path}: the tensors hold different numbers of samples ({shown})", source.where)
    if not next(iter(samples.values())):
        raise TrainError(f"{source.path}: the data is empty (0 samples)", source.where)


def _find(infos: dict, name: str, role: str, source: Source, held: list[str]):
    if name not in infos:
        raise TrainError(f"{source.path} holds no tensor '{name}' for {role} (it holds: {', '.join(held[:8])}"
                         f"{', ...' if len(held) > 8 else ''}){suggest(name, held)}", source.where)  # fmt: skip
    return infos[name]


def _check_target_type(built: Built, info, source: Source) -> None:
    loss = built.spec.head.train.loss.kind
    dtype = _dt(info)
    if loss in ("cross_entropy", "next_token") and dtype not in ("int64", "int32", "int16", "uint8"):
        raise TrainError(f"{source.path}: the target '{info.name}' is {dtype}; the {loss} loss needs integer class "
                         "ids (int64)", source.where)  # fmt: skip
    if loss not in ("cross_entropy", "next_token") and not dtype.startswith(("float", "bfloat")):
        raise TrainError(f"{source.path}: the target '{info.name}' is {dtype}; the {loss} loss needs floating-point "
                         "values", source.where)  # fmt: skip


def _check_values(built: Built, inputs: dict, target: torch.Tensor, source: Source, classes: int | None) -> None:
    train = built.spec.head.train
    pairs, target_name = tensor_names(built)
    for (name, tensor), x in zip(pairs, inputs.values(), strict=True):
        _finite(x, tensor, source)
        spec = built.spec.head.inputs[name]
        if not x.is_floating_point():
            low, high = spec.id_range
            _in_range(x, low, high, f"tensor '{tensor}' (the model's input '{name}')", source)
    _finite(target, target_name, source)
    if classes is not None:
        ids = target[target != train.loss.ignore_index]
        _in_range(ids, 0, classes, f"the target '{target_name}' (class ids of a {classes}-class output)", source)


def _finite(x: torch.Tensor, name: str, source: Source) -> None:
    if not x.is_floating_point():
        return
    bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1) if x.dim() > 1 else ~torch.isfinite(x)
    if bad.any():
        first = int(bad.nonzero()[0, 0])
        raise TrainError(f"{source.path}: tensor '{name}' holds NaN or infinite values in {int(bad.sum()):,} "
                         f"sample(s), the first at sample {first}", source.where)  # fmt: skip


def _in_range(x: torch.Tensor, low: int, high: int, what: str, source: Source) -> None:
    bad = (x < low) | (x >= high)
    if bad.any():
        value = int(x[bad][0])
        raise TrainError(f"{source.path}: {what} holds {value}, outside [{low}, {high}) "
                         f"({int(bad.sum()):,} value(s) outside)", source.where)  # fmt: skip


def _dt(info) -> str:
    dtype = TORCH_DTYPES.get(info.dtype)
    return dtype_name(dtype) if dtype is not None else info.dtype


def _shown(info) -> str:
    return f"{list(info.shape)} {_dt(info)}"
