"""Initializer rules: a separate pass after PyTorch's default initialization.

Each unique parameter (a tied tensor is one parameter under several paths) gets the
last rule that selects it by any of its paths; parameters no rule selects keep the
default. Runs under the builder's seeded RNG, so equal seeds give equal weights.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

import torch
from torch import nn

from netcfg.errors import BuildError, Diagnostic, Loc
from netcfg.spec import model as s


@dataclass(frozen=True)
class ParamGroup:
    """One tensor and every path it is reachable by (more than one when tied)."""

    names: tuple[str, ...]
    param: nn.Parameter


def param_groups(model: nn.Module) -> list[ParamGroup]:
    by_id: dict[int, list[str]] = {}
    params: dict[int, nn.Parameter] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(p), []).append(name)
        params[id(p)] = p
    return [ParamGroup(tuple(names), params[key]) for key, names in by_id.items()]


def owner_type(name: str, types: dict[str, str]) -> str | None:
    """Layer type of the innermost spec node that owns parameter `name`."""
    parts = name.split(".")[:-1]
    for i in range(len(parts), -1, -1):
        found = types.get(".".join(parts[:i]))
        if found is not None:
            return found
    return None


def _as_list(value: str | list[str] | None) -> list[str] | None:
    return [value] if isinstance(value, str) else value


class _Selector:
    """A rule's selectors, compiled once: globs on the path, layer types of the owner."""

    def __init__(self, rule: s.InitRule, types: dict[str, str]):
        globs = _as_list(rule.params) or ["*"]
        self.pattern = re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs))
        self.layers = _as_list(rule.layers)
        self.types = types

    def __call__(self, name: str) -> bool:
        if not self.pattern.match(name):
            return False
        return self.layers is None or owner_type(name, self.types) in self.layers


def assign(model: nn.Module, rules: list[s.InitRule], types: dict[str, str], groups=None) -> dict[str, int]:
    """Map each parameter group's first path to the index of the rule that sets it."""
    selectors = [_Selector(rule, types) for rule in rules]
    chosen: dict[str, int] = {}
    for group in groups if groups is not None else param_groups(model):
        for i, selector in enumerate(selectors):
            if any(selector(n) for n in group.names):
                chosen[group.names[0]] = i
    return chosen


def apply_rules(
    model: nn.Module, rules: list[s.InitRule], types: dict[str, str], locs: list[Loc], groups=None
) -> dict[str, int]:
    groups = param_groups(model) if groups is None else groups
    chosen = assign(model, rules, types, groups)
    by_name = {g.names[0]: g for g in groups}
    problems = []
    with torch.no_grad():
        for name, index in chosen.items():
            try:
                fill(by_name[name].param, rules[index].init)
            except ValueError as exc:
                problems.append(Diagnostic(locs[index], f"cannot initialize '{name}': {exc}"))
    if problems:
        raise BuildError(problems)
    return chosen


def fill(t: torch.Tensor, init) -> None:
    """Fill `t` in place from one initializer spec."""
    kind = init.kind
    if kind in _NEEDS_MATRIX and t.dim() < 2:
        raise ValueError(f"{kind} needs at least 2 dimensions, the tensor has shape {list(t.shape)}")
    if kind == "mixture":
        _mixture(t, init)
    else:
        _SIMPLE[kind](t, init)


_NEEDS_MATRIX = {"xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal"}

_SIMPLE = {
    "normal": lambda t, i: nn.init.normal_(t, i.mean, i.std),
    "uniform": lambda t, i: nn.init.uniform_(t, i.low, i.high),
    "constant": lambda t, i: nn.init.constant_(t, i.value),
    "zeros": lambda t, i: nn.init.zeros_(t),
    "ones": lambda t, i: nn.init.ones_(t),
    "xavier_uniform": lambda t, i: nn.init.xavier_uniform_(t, i.gain),
    "xavier_normal": lambda t, i: nn.init.xavier_normal_(t, i.gain),
    "kaiming_uniform": lambda t, i: nn.init.kaiming_uniform_(t, i.a, i.mode, i.nonlinearity),
    "kaiming_normal": lambda t, i: nn.init.kaiming_normal_(t, i.a, i.mode, i.nonlinearity),
    "orthogonal": lambda t, i: nn.init.orthogonal_(t, i.gain),
    "trunc_normal": lambda t, i: nn.init.trunc_normal_(t, i.mean, i.std, i.low, i.high),
}


def _mixture(t: torch.Tensor, init: s.MixtureInit) -> None:
    # Draw every component over the whole tensor, then keep, per element, the one
    # picked by a uniform draw against the cumulative probabilities.
    pick = torch.rand(t.shape, device=t.device)
    edges = torch.tensor([c.p for c in init.components]).cumsum(0).tolist()
    edges[-1] = 1.0
    out = torch.empty_like(t)
    low = 0.0
    for component, high in zip(init.components, edges, strict=False):
        draw = torch.empty_like(t)
        fill(draw, component.init)
        mask = (pick >= low) & (pick < high)
        out[mask] = draw[mask]
        low = high
    t.copy_(out)


def unused_rule_warnings(
    rules: list[s.InitRule], types: dict[str, str], chosen: dict[str, int], locs: list[Loc], groups: list[ParamGroup]
) -> list[str]:
    """A rule that sets nothing: a typo in its selectors, or every parameter it selects overridden."""
    names = [n for g in groups for n in g.names]
    warnings = []
    for i, rule in enumerate(rules):
        if i in chosen.values():
            continue
        selector = _Selector(rule, types)
        if any(selector(n) for n in names):
            warnings.append(f"{locs[i]}: warning: init rule {i} sets no parameter: later rules override it "
                            "for every parameter it selects")  # fmt: skip
        else:
            warnings.append(f"{locs[i]}: warning: init rule {i} selects no parameter (a typo in its selectors?)")
    return warnings
