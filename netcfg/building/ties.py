"""Parameter ties by path: check every group first (paths exist, shapes and dtypes
agree, naming both sides), then alias by identity so the tensors are one."""

from __future__ import annotations

from torch import nn

from netcfg.building.devices import dtype_name
from netcfg.catalogue.shapes import fmt
from netcfg.errors import BuildError, Diagnostic, Loc
from netcfg.suggest import MAX_LISTED, Suggestions


def check(model: nn.Module, groups: list[list[str]], locs: list[list[Loc]]) -> None:
    """Linear in the paths: a tie of 110,000 paths is checked with sets and dicts, and the paths
    not in the model are listed (with a did-you-mean) up to MAX_LISTED, then counted."""
    params = dict(model.named_parameters(remove_duplicate=False))
    missing = _Missing(params)
    problems = []
    first_tie: dict[str, int] = {}
    for index, (group, group_locs) in enumerate(zip(groups, locs, strict=False)):
        problems += _check_group(params, group, group_locs, missing)
        for path, loc in zip(group, group_locs, strict=False):
            if first_tie.get(path, index) != index:  # ties are not chained: one tie lists every path
                problems.append(Diagnostic(loc, f"tie: '{path}' is already in tie {first_tie[path]}; "
                                                "list all the paths of one tensor in one tie"))  # fmt: skip
            first_tie.setdefault(path, index)
    problems += missing.rest()
    if problems:
        raise BuildError(problems)


class _Missing:
    """Paths not in the model: the first MAX_LISTED said one by one, the others counted."""

    def __init__(self, params: dict):
        self.suggest = Suggestions(list(params))
        self.count = 0
        self.last: Loc | None = None

    def __call__(self, path: str, loc: Loc) -> list[Diagnostic]:
        self.count += 1
        if self.count > MAX_LISTED:
            self.last = self.last or loc
            return []
        return [Diagnostic(loc, f"tie: no parameter '{path}' in the model{self.suggest(path)}")]

    def rest(self) -> list[Diagnostic]:
        more = self.count - MAX_LISTED
        return [Diagnostic(self.last, f"tie: ... and {more:,} more paths not in the model")] if more > 0 else []


def _check_group(params: dict, group: list[str], locs: list[Loc], missing: _Missing) -> list[Diagnostic]:
    problems = []
    seen: set[str] = set()
    absent = False
    for path, loc in zip(group, locs, strict=False):
        if path in seen:
            problems.append(Diagnostic(loc, f"tie: '{path}' is listed twice in one tie"))
        elif path not in params:
            problems += missing(path, loc)
            absent = True
        seen.add(path)
    if problems or absent:
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
