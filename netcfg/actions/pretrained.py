"""Partial reuse: initialize parts of a model from a checkpoint of another architecture.

Each `pretrained:` entry maps name prefixes in the file to name prefixes in the model
(`{"0.": "encoder.0."}`: the file's `0.weight` becomes the model's `encoder.0.weight`).
Every mapping must match at least one tensor, every mapped tensor must exist in the model
with the same shape and dtype; problems are reported together, naming both keys.
"""

from __future__ import annotations

import bisect
from pathlib import Path

import torch

from netcfg.building.builder import Built
from netcfg.errors import CheckpointError, Diagnostic, Loc
from netcfg.io.reading import SAFETENSORS_NAMES, open_checkpoint
from netcfg.io.safetensors_header import Header
from netcfg.io.shards import read_checkpoint
from netcfg.suggest import MAX_LISTED, Suggestions


def apply(built: Built) -> dict[str, str]:
    """Load every `pretrained:` source into `built.model`; returns model key -> 'file:key'."""
    loaded: dict[str, str] = {}
    for index, source in enumerate(built.spec.head.pretrained):
        where = built.spec.loc(("pretrained", index))
        path = _resolve(built.spec.file, source.file)
        try:
            header = read_checkpoint(path)  # a safetensors file, or a sharded checkpoint's index
        except CheckpointError as exc:  # said at the spec's entry, naming the file
            raise CheckpointError(f"pretrained {index}: {path}: {exc.diagnostics[0].message}", where) from None
        plan = _plan(built, header, source, where, index)
        _copy(built, path, plan, source.trainable)
        loaded.update({dst: f"{path}:{src}" for src, dst in plan.items()})
    return loaded


def overridden_rule_warnings(built: Built) -> list[str]:
    """An init rule whose every parameter `pretrained:` then loads sets nothing that is kept."""
    rules: dict[int, list[str]] = {}
    for name, index in built.init_rules.items():
        rules.setdefault(index, []).append(name)
    return [
        f"{built.spec.loc(('init', index))}: warning: init rule {index} sets no parameter that is kept: "
        "`pretrained:` loads every parameter it selects"
        for index, names in sorted(rules.items())
        if all(n in built.pretrained for n in names)
    ]


def _resolve(spec_file: str, file: str) -> Path:
    path = Path(file)
    return path if path.is_absolute() else Path(spec_file).parent / path


def _plan(built: Built, header: Header, source, where: Loc, index: int) -> dict[str, str]:
    """File key -> model key, checked; raises one CheckpointError listing the problems.

    Linear in the tensors and the model's keys: the file's names are sorted once and each prefix
    finds its range by bisection; each kind of problem is listed up to MAX_LISTED, then counted,
    and at most that many did-you-means are computed."""
    state = built.model.state_dict(keep_vars=True)
    names = sorted(header.tensors)
    prefixes = Suggestions(sorted({k.split(".")[0] + "." for k in names}))
    targets = Suggestions(list(state))
    plan: dict[str, str] = {}
    unmatched, misfits = [], []
    for src, dst in source.map.items():
        keys = _starting_with(names, src)
        if not keys:
            unmatched.append(f"pretrained {index}: '{src}' matches no tensor of {header.path}{prefixes(src)}")
        for key in keys:
            target = dst + key[len(src) :]
            misfits += _fits(header, key, target, state, index, targets)
            plan[key] = target
    problems = _listed(unmatched, f"pretrained {index}: ... and {{}} more mappings that match no tensor")
    problems += _listed(misfits, f"pretrained {index}: ... and {{}} more tensors that do not fit")
    if problems:
        raise CheckpointError([Diagnostic(where, p) for p in problems])
    return plan


def _listed(problems: list[str], more: str) -> list[str]:
    """The first MAX_LISTED problems, and a line counting the others."""
    rest = len(problems) - MAX_LISTED
    return problems[:MAX_LISTED] + ([more.format(f"{rest:,}")] if rest > 0 else [])


def _starting_with(names: list[str], prefix: str) -> list[str]:
    """The sorted names that start with `prefix`: they follow one another from its place."""
    start = end = bisect.bisect_left(names, prefix)
    while end < len(names) and names[end].startswith(prefix):
        end += 1
    return names[start:end]


def _fits(header: Header, key: str, target: str, state: dict, index: int, targets: Suggestions) -> list[str]:
    info = header.tensors[key]
    if target not in state:
        return [f"pretrained {index}: '{key}' maps to '{target}', which is not in the model{targets(target)}"]
    want = state[target]
    if tuple(want.shape) != info.shape or SAFETENSORS_NAMES.get(want.dtype) != info.dtype:
        return [f"pretrained {index}: '{key}' is {info.dtype} {list(info.shape)} in the file, "
                f"'{target}' is {SAFETENSORS_NAMES.get(want.dtype)} {list(want.shape)} in the model"]  # fmt: skip
    return []


def _copy(built: Built, path: Path, plan: dict[str, str], trainable: bool) -> None:
    state = built.model.state_dict(keep_vars=True)
    if not trainable:
        for dst in plan.values():
            if isinstance(state[dst], torch.nn.Parameter):
                state[dst].requires_grad_(False)
    if built.device.type == "meta":
        return  # checked against the header; no data to copy
    with open_checkpoint(path) as f, torch.no_grad():
        for src, dst in plan.items():
            state[dst].copy_(f.get_tensor(src))
