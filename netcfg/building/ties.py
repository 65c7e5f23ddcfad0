"""Parameter ties by path: check every group first (paths exist, shapes and dtypes
agree, naming both sides), then alias by identity so the tensors are one."""

from __future__ import annotations

from torch import nn

from netcfg.building.devices import dtype_name
from netcfg.catalogue.shapes import fmt
from netcfg.errors import BuildError, Diagnostic, Loc
from netcfg.spec.validate import suggest


def check(model: nn.Module, groups: list[list[str]], locs: list[list[Loc]]) -> None:
    params = dict(model.named_parameters(remove_duplicate=False))
    problems = []
    first_tie: dict[str, int] = {}
    for index, (group, group_locs) in enumerate(zip(groups, locs, strict=False)):
        problems += _check_group(params, group, group_locs)
        for path, loc in zip(group, group_locs, strict=False):
            if first_tie.get(path, index) != index:  # ties are not chained: one tie lists every path
                problems.append(Diagnostic(loc, f"tie: '{path}' is already in tie {first_tie[path]}; "
                                                "list all the paths of one tensor in one tie"))  # fmt: skip
            first_tie.setdefault(path, index)
    if problems:
        raise BuildError(problems)


def _check_group(params: dict, group: list[str], locs: list[Loc]) -> list[Diagnostic]:
    problems = []
    for i, (path, loc) in enumerate(zip(group, locs, strict=False)):
        if path in group[:i]:
            problems.append(Diagnostic(loc, f"tie: '{path}' is listed twice in one tie"))
        elif path not in params:
            problems.append(Diagnostic(loc, f"tie: no parameter '{path}' in the model{suggest(path, list(params))}"))
    if problems:
        return problems
    first = params[group[0]]
    for path, loc in zip(group[1:], locs[1:], strict=False):
        other = params[path]
        if other.shape != first.shape or other.dtype != first.dtype:
            problems.append(Diagnostic(loc, (
                f"cannot tie '{path}' {fmt(other.shape)} {_dt(other)} to '{group[0]}' "
                f"{fmt(first.shape)} {_dt(first)}: shapes or dtypes differ"
            )))  # fmt: skip
        elif other.requires_grad != first.requires_grad:
            frozen, trained = (path, group[0]) if not other.requires_grad else (group[0], path)
            problems.append(Diagnostic(loc, (
                f"cannot tie '{path}' to '{group[0]}': '{frozen}' is frozen (trainable: false), '{trained}' is "
                "not; one tensor is trained or not"
            )))  # fmt: skip
    return problems


def _dt(p: nn.Parameter) -> str:
    return dtype_name(p.dtype)


def tie(model: nn.Module, groups: list[list[str]]) -> None:
    """Make every path of each group refer to the first path's Parameter object."""
    modules = dict(model.named_modules(remove_duplicate=False))
    params = dict(model.named_parameters(remove_duplicate=False))
    for group in groups:
        keep = params[group[0]]
        for path in group[1:]:
            owner, _, leaf = path.rpartition(".")
            modules[owner].register_parameter(leaf, keep)
