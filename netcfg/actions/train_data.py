"""The data of a training run: a safetensors file (or a sharded index) of named tensors, checked
against the model.

Every tensor is checked from the file's header first (a tensor for each model input and the
target, of the input's shape past the batch dimension and its dtype, one number of samples),
then for values (NaN or infinite floats, class ids outside the model's classes, token ids
outside the input's range). Data read whole (`Dataset`) is checked whole before training; data
streamed from the file (`StreamedDataset`: a file larger than memory) is checked batch by batch
as it is read, the first bad batch stopping the run with one line naming the sample. Each problem
is one line naming the file, the tensor and what the model needs.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch

from netcfg.building.builder import Built
from netcfg.building.devices import dtype_name
from netcfg.errors import Loc, NetcfgError, TrainError
from netcfg.io.files import open_regular
from netcfg.io.memory import available
from netcfg.io.reading import TORCH_DTYPES, open_checkpoint
from netcfg.io.rows import RowReader
from netcfg.io.shards import read_checkpoint
from netcfg.suggest import suggest

FULL_HASH_UP_TO = 1 << 30
SAMPLES, SAMPLE = 256, 64 << 10
"""The fingerprint of larger data reads 256 blocks of 64 KiB of each file (see fingerprint)."""
STREAM_ABOVE = 1 << 30
"""`stream: auto` streams data whose tensors take more bytes than this, or more than half the
free memory (see benchmarks/bench_train_data.py for what streaming costs)."""


@dataclass
class Dataset:
    """Named tensors of one split, sample i being row i of each."""

    inputs: list[torch.Tensor]
    """In the model's input order."""
    target: torch.Tensor

    def __len__(self) -> int:
        return self.target.shape[0]

    def take(
        self, index: torch.Tensor, device: torch.device, reading: str = ""
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        xs = [x[index].to(device, non_blocking=True) for x in self.inputs]
        return xs, self.target[index].to(device, non_blocking=True)

    def subset(self, index: torch.Tensor) -> Dataset:
        return Dataset([x[index] for x in self.inputs], self.target[index])


@dataclass
class StreamedDataset:
    """Samples read from the file batch by batch (only the rows a batch needs), each batch's
    values checked as it is read. Picklable: a data-loader worker reads with its own copy."""

    reader: RowReader
    names: list[str]
    """The tensors of the model's inputs, in their order."""
    target_name: str
    checks: Checks
    rows: torch.Tensor | None = None
    """The file rows of this split's samples (None: every row, in order)."""
    count: int = 0

    def __len__(self) -> int:
        return self.count

    def take(
        self, index: torch.Tensor, device: torch.device, reading: str = ""
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The samples `index` of this split, read from the file and checked; `reading` says for
        what (a problem names it: 'step 12')."""
        rows = (index if self.rows is None else self.rows[index]).tolist()
        try:
            xs = [self.reader.rows(name, rows) for name in self.names]
            y = self.reader.rows(self.target_name, rows)
        except NetcfgError as exc:  # the file changed or cannot be read: one line at the data's place
            where = self.checks.source
            raise TrainError(f"cannot read {where.path}: {exc.diagnostics[0].message}", where.where) from None
        if self.checks.class_ids:
            y = y.long()
        self.checks.run(xs, y, rows, reading)
        return [x.to(device, non_blocking=True) for x in xs], y.to(device, non_blocking=True)

    def subset(self, index: torch.Tensor) -> StreamedDataset:
        rows = index if self.rows is None else self.rows[index]
        return StreamedDataset(self.reader, self.names, self.target_name, self.checks, rows, len(rows))


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
    """sha256 of the data's bytes (a sharded index's, then its shards' in order): a resumed run
    must read the same data. Data over FULL_HASH_UP_TO bytes: of each file's size, header and
    SAMPLES blocks spread over it (reading a file larger than memory whole at every start or
    resume would take minutes; data made again differs in every block)."""
    digest = hashlib.sha256()
    checkpoint = read_checkpoint(path)
    whole = checkpoint.size <= FULL_HASH_UP_TO
    for name, header in ([(path, None)] if checkpoint.sharded else []) + [(h.path, h) for h in checkpoint.files]:
        with open_regular(name, TrainError, "data file") as f:
            if whole or header is None:
                for chunk in iter(lambda f=f: f.read(1 << 24), b""):
                    digest.update(chunk)
                continue
            digest.update(f"{header.size}:".encode() + f.read(header.header_size))
            for k in range(SAMPLES):
                f.seek(header.header_size + k * max(0, header.size - header.header_size - SAMPLE) // (SAMPLES - 1))
                digest.update(f.read(SAMPLE))
    return digest.hexdigest()


def recorded(spec: dict) -> dict:
    """The spec as a checkpoint records it, to tell a resume from another run: without how the
    data is read (`workers`, `stream`), which changes no result."""
    train = {k: v for k, v in spec.get("train", {}).items() if k not in ("workers", "stream")}
    return {**spec, "train": train}


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


def load(built: Built, source: Source, out_shape: tuple) -> Dataset | StreamedDataset:
    """The file's tensors for the model's inputs and the target, the header's checks passed: read
    whole and checked (Dataset), or streamed and checked batch by batch (`train.stream`)."""
    train = built.spec.head.train
    pairs, target_name = tensor_names(built)
    checks = _checks(built, pairs, target_name, source, out_shape)
    wanted = list(dict.fromkeys([t for _, t in pairs] + [target_name]))
    try:
        with open_checkpoint(source.path) as tensors:
            _check_header(built, tensors.tensors, pairs, target_name, source)
            _check_target_shape(train.loss.kind, tensors.tensors[target_name], out_shape, source)
            if streams(train.stream, [tensors.tensors[n] for n in wanted]):
                count = tensors.tensors[target_name].shape[0]
                return StreamedDataset(RowReader(tensors.checkpoint), [t for _, t in pairs], target_name, checks,
                                       None, count)  # fmt: skip
            read = tensors.read(torch.device("cpu"), wanted)
    except TrainError:
        raise
    except Exception as exc:  # CheckpointError, InputError: unreadable file; one line at the data's place
        message = getattr(exc, "diagnostics", [None])[0]
        raise TrainError(f"cannot read {source.path}: {message.message if message else exc}", source.where) from None
    inputs = [read[t] for _, t in pairs]
    target = read[target_name].long() if checks.class_ids else read[target_name]
    checks.run(inputs, target)
    return Dataset(inputs, target)


def streams(choice: bool | str, infos: list) -> bool:
    """Whether to stream tensors of these sizes: `stream: true/false`, or auto (see STREAM_ABOVE)."""
    if choice != "auto":
        return bool(choice)
    need = sum(info.nbytes for info in infos)
    free = available(torch.device("cpu"))
    return need > STREAM_ABOVE or (free is not None and need > free // 2)


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


def _checks(built: Built, pairs: list, target_name: str, source: Source, out_shape: tuple) -> Checks:
    train = built.spec.head.train
    inputs = []
    for name, tensor in pairs:
        spec = built.spec.head.inputs[name]
        ids = None if spec.dtype.startswith(("float", "bfloat")) else spec.id_range
        inputs.append((f"tensor '{tensor}' (the model's input '{name}')", f"tensor '{tensor}'", ids))
    class_ids = train.loss.kind in ("cross_entropy", "next_token")
    count = classes(train.loss.kind, out_shape)
    return Checks(source, inputs, target_name, count, train.loss.ignore_index if class_ids else None, class_ids)


@dataclass(frozen=True)
class Checks:
    """The checks of the data's values: finite floats, ids within their range."""

    source: Source
    inputs: list[tuple[str, str, tuple[int, int] | None]]
    """Per model input: (what it is, its tensor, the [low, high) of its ids or None)."""
    target: str
    classes: int | None
    ignore_index: int | None
    class_ids: bool
    """The target holds class ids (read as int64)."""

    def run(self, xs: list[torch.Tensor], y: torch.Tensor, rows: list[int] | None = None, reading: str = "") -> None:
        """Raise TrainError at the first problem. `rows`: the file rows of a batch's samples (it is
        named); None: the whole data (the count of bad samples is named too)."""
        for (what, tensor, ids), x in zip(self.inputs, xs, strict=True):
            _finite(x, tensor, self.source, rows, reading)
            if ids is not None and not x.is_floating_point():
                _in_range(x, ids[0], ids[1], what, self.source, None, rows, reading)
        _finite(y, f"tensor '{self.target}'", self.source, rows, reading)
        if self.classes is not None:
            keep = y != self.ignore_index
            what = f"the target '{self.target}' (class ids of a {self.classes}-class output)"
            _in_range(y, 0, self.classes, what, self.source, keep, rows, reading)


def _finite(x: torch.Tensor, name: str, source: Source, rows: list[int] | None, reading: str) -> None:
    if not x.is_floating_point():
        return
    bad = torch.cat([_bad_rows(part) for part in x.split(_rows_per_part(x))]) if len(x) else x.new_empty(0, dtype=bool)
    if bad.any():
        first = int(bad.nonzero()[0, 0])
        found = (f"in {int(bad.sum()):,} sample(s), the first at sample {first}" if rows is None
                 else f"at sample {rows[first]} ({reading}; streamed data is checked as it is read)")  # fmt: skip
        raise TrainError(f"{source.path}: {name} holds NaN or infinite values {found}", source.where)


def _bad_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows holding a NaN or an infinity: x * 0 is NaN exactly there, and a sum of zeros never
    overflows (2.5 times as fast as isfinite(x).all(), which makes more temporaries)."""
    zeros = x * 0
    return torch.isnan(zeros.reshape(x.shape[0], -1).sum(dim=1) if x.dim() > 1 else zeros)


def _rows_per_part(x: torch.Tensor) -> int:
    """Rows of about 64 MB: the check makes a temporary of the size of its input (checked whole,
    a 1.5 GB tensor took 2.5 GB more at its peak with isfinite)."""
    row = max(1, x[0].numel() * x.element_size())
    return max(1, (64 << 20) // row)


def _in_range(x: torch.Tensor, low: int, high: int, what: str, source: Source, keep: torch.Tensor | None,
              rows: list[int] | None, reading: str) -> None:  # fmt: skip
    bad = (x < low) | (x >= high)
    if keep is not None:
        bad &= keep
    if bad.any():
        value = int(x[bad][0])
        if rows is None:
            found = f"({int(bad.sum()):,} value(s) outside)"
        else:
            sample = int(bad.reshape(bad.shape[0], -1).any(dim=1).nonzero()[0, 0])
            found = f"at sample {rows[sample]} ({reading}; streamed data is checked as it is read)"
        raise TrainError(f"{source.path}: {what} holds {value}, outside [{low}, {high}) {found}", source.where)


def _dt(info) -> str:
    dtype = TORCH_DTYPES.get(info.dtype)
    return dtype_name(dtype) if dtype is not None else info.dtype


def _shown(info) -> str:
    return f"{list(info.shape)} {_dt(info)}"
