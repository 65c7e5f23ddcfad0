"""Resumable training checkpoints: every tensor in safetensors, the rest as JSON in its metadata.

OUT/checkpoints/step-000000100.safetensors holds the model (`model.NAME`, each tied tensor once),
the optimizer's per-parameter state (`optimizer.I.KEY`), the RNG states (`rng.torch`,
`rng.cuda`), and in its metadata `netcfg.train`: the step, the optimizer's hyperparameters and
non-tensor state, the metrics of the log window in progress, the spec and the data's sha256.
Nothing is pickled. Writes go through netcfg.io.tensor_files (a temporary file renamed over the
target): a kill leaves the previous checkpoint whole. The last `keep` stay.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

import torch

from netcfg.actions.checkpoint import alias_groups, canonical
from netcfg.errors import Loc, TrainError
from netcfg.io.reading import open_checkpoint
from netcfg.io.tensor_files import write_tensors

FORMAT = "1"
KEY = "netcfg.train"
KEY_FORMAT = "netcfg.train_format"
NAME = re.compile(r"step-([0-9]{9,})\.safetensors")


@dataclass
class State:
    """What a checkpoint restores, besides the tensors put back in place."""

    step: int
    window: dict
    """The sums of the log window in progress."""
    path: str


def folder(out: str) -> str:
    return os.path.join(out, "checkpoints")


def listed(out: str) -> list[tuple[int, str]]:
    """(step, path) of every checkpoint in OUT/checkpoints, oldest first."""
    try:
        names = os.listdir(folder(out))
    except FileNotFoundError:
        return []
    found = [(int(m.group(1)), os.path.join(folder(out), n)) for n in names if (m := NAME.fullmatch(n))]
    return sorted(found)


def path_of(out: str, step: int) -> str:
    return os.path.join(folder(out), f"step-{step:09d}.safetensors")


def save(out: str, step: int, model, optimizer, run: dict, window: dict, keep: int, states=None) -> str:
    """Write the checkpoint of `step` atomically, then remove all but the last `keep`. `states`:
    (model state dict, optimizer state dict) gathered whole from a sharded model, written instead
    of `model`'s and `optimizer`'s own (the same file as one process writes)."""
    os.makedirs(folder(out), exist_ok=True)
    path = path_of(out, step)
    model_state, optimizer_state = states or (model.state_dict(), optimizer.state_dict())
    tensors, record = _optimizer_parts(optimizer_state)
    state = model_state
    for group in alias_groups(model):
        tensors[f"model.{group[0]}"] = state[group[0]]
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    meta = {"step": step, "window": window, "optimizer": record, **run}
    write_tensors(tensors, path, metadata={KEY_FORMAT: FORMAT, KEY: canonical(meta)}, flag="--out")
    for _, old in listed(out)[:-keep]:
        os.unlink(old)
    return path


def _optimizer_parts(state: dict) -> tuple[dict, dict]:
    """The optimizer's state_dict as tensors (optimizer.I.KEY) and JSON (the rest)."""
    tensors, other = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                other.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "state": other}


def read_run(path: str) -> dict:
    """The JSON record of a checkpoint (its step, spec, data), from the header alone."""
    with open_checkpoint(path) as source:
        return _record(source.metadata, path)


def _record(meta: dict, path: str) -> dict:
    if meta.get(KEY_FORMAT) != FORMAT or KEY not in meta:
        raise TrainError("not a netcfg training checkpoint (no netcfg.train record)", Loc(path))
    try:
        record = json.loads(meta[KEY])
    except ValueError:
        raise TrainError("its netcfg.train record is not JSON (damaged?)", Loc(path)) from None
    if not isinstance(record, dict) or not isinstance(record.get("step"), int):
        raise TrainError("its netcfg.train record has no step (damaged?)", Loc(path))
    return record


def restore(path: str, model, optimizer) -> State:
    """Put the checkpoint's model, optimizer and RNG states in place; the RNG last."""
    record, tensors = read(path)
    state = model.state_dict()
    with torch.no_grad():
        for group in alias_groups(model):
            saved = tensors.get(f"model.{group[0]}")
            if saved is None or saved.shape != state[group[0]].shape or saved.dtype != state[group[0]].dtype:
                raise TrainError(f"its tensor 'model.{group[0]}' is missing or does not fit the model", Loc(path))
            state[group[0]].copy_(saved)
    optimizer.load_state_dict(optimizer_state(tensors, record))
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    return State(step=record["step"], window=record["window"], path=path)


def read(path: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """A checkpoint's record and every tensor, on the CPU."""
    with open_checkpoint(path) as source:
        record = _record(source.metadata, path)
        tensors = source.read(torch.device("cpu"))
    return record, tensors


def optimizer_state(tensors: dict, record: dict) -> dict:
    """The optimizer's state_dict a checkpoint holds (its tensors and record, from `read`)."""
    record = record["optimizer"]
    state: dict[int, dict] = {}
    for name, tensor in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = tensor
    for index, values in record["state"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": record["param_groups"]}


def differences(saved: dict, now: dict, path: str = "") -> list[str]:
    """Each place where two JSON values differ, as 'path: A there, B now'."""
    if isinstance(saved, dict) and isinstance(now, dict):
        out = []
        for key in list(saved) + [k for k in now if k not in saved]:
            where = f"{path}.{key}" if path else str(key)
            if key not in now:
                out.append(f"{where} is set there, not now")
            elif key not in saved:
                out.append(f"{where} is set now, not there")
            else:
                out += differences(saved[key], now[key], where)
        return out
    if saved != now or type(saved) is not type(now):
        return [f"{path or 'the spec'} is {_short(saved)} there, {_short(now)} now"]
    return []


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
