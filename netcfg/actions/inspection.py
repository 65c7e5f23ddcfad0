"""What is in a model: parameters, layers, FLOPs, memory and init coverage, computed on
the meta device (nothing allocated, so a 70-billion-parameter spec is inspected on a
laptop). Returns a Report; prints nothing.

The Report is also the JSON contract of `netcfg inspect --format json` (its JSON Schema
is `Report.model_json_schema()`; keys are documented in the README).
"""

from __future__ import annotations

from math import prod
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from netcfg.actions import flops as flop_rules
from netcfg.building import devices, memplan
from netcfg.building.builder import Built
from netcfg.building.init import param_groups
from netcfg.catalogue.base import Node
from netcfg.catalogue.composite import Shared
from netcfg.catalogue.registry import REGISTRY
from netcfg.spec.model import Spec

REPORT_FORMAT = 1
_CONFIG = ConfigDict(extra="forbid", frozen=True)


class ParamRow(BaseModel):
    model_config = _CONFIG
    path: str = Field(description="Name in named_parameters() and state_dict(); model.get_parameter(path) returns it.")
    shape: list[int]
    dtype: str
    device: str
    count: int
    trainable: bool
    init: str = Field(description="'default' (PyTorch's), or 'rule N: kind' for the init rule that set it.")
    tie: int | None = Field(description="Tie group index (into `ties`) when this tensor has several paths.")


class LayerRow(BaseModel):
    model_config = _CONFIG
    path: str = Field(description="Module path ('' is the whole model); model.get_submodule(path).")
    type: str
    depth: int
    input_shapes: list[list[int]]
    output_shape: list[int]
    parameters: int = Field(description="Unique parameters in this module and its children.")
    share: float = Field(description="parameters / total unique parameters.")
    flops: int | None = Field(
        description="None: not countable without values (this layer, or one inside it, does work that "
        "depends on its input's values)."
    )
    macs: int | None
    computed: dict[str, Any] = Field(
        default_factory=dict,
        description="Arguments computed when building from the incoming shape (`${in_channels // 2}`): their values.",
    )


class Memory(BaseModel):
    model_config = _CONFIG
    mode: Literal["inference", "train"]
    weights: int
    buffers: int
    activations: int = Field(
        description="inference: the planned peak of live activations of one forward pass of the sample input "
        "(an upper bound, input included); train: every layer's output and input (what autograd keeps)."
    )
    activations_at: str = Field(
        "", description="inference: the module running at that peak, as 'path (type)' ('model (type)' for the root)."
    )
    gradients: int
    optimizer: int = Field(description="Adam: two tensors the size of the trainable parameters.")
    total: int


class InitRuleUse(BaseModel):
    model_config = _CONFIG
    index: int
    where: str
    kind: str
    matched: int = Field(description="Parameters this rule set (after later rules overrode it).")


class InitCoverage(BaseModel):
    model_config = _CONFIG
    rules: list[InitRuleUse]
    default: list[str] = Field(
        description="Parameters no rule selected and no `pretrained:` file loads: they keep PyTorch's initialization."
    )
    pretrained: dict[str, str] = Field(
        default_factory=dict,
        description="Parameter -> 'file:key' a `pretrained:` entry loads it from (after the rules).",
    )
    unused_rules: list[int] = Field(description="Rules that set nothing (a typo in a glob?).")


class Report(BaseModel):
    """The result of `netcfg inspect` (JSON keys documented in the README)."""

    model_config = _CONFIG
    format: int = REPORT_FORMAT
    name: str | None
    file: str
    input: dict = Field(description="The (first) sample input: shape, dtype, low, high.")
    inputs: dict[str, dict] = Field(description="Every sample input by name ('input' for one), in forward order.")
    outputs: dict[str, dict] = Field(description="Every output by name ('output' for one): shape and dtype.")
    dtype: str
    parameters: int = Field(description="Unique parameters: a tied tensor counts once.")
    state_dict_parameters: int = Field(description="Parameter elements counting each tied path.")
    state_dict_entries: int = Field(description="Tensors in state_dict() (parameters and persistent buffers).")
    trainable: int
    frozen: int
    buffers: int = Field(description="Buffer elements.")
    bytes: dict[str, int] = Field(description="parameters, buffers, and bytes per dtype ('float32': n, ...).")
    flops: int = Field(
        description="FLOPs of one forward pass on the sample input (multiply-add = 2); with "
        "flops_uncounted, those of the other layers only."
    )
    macs: int
    flops_uncounted: list[str] = Field(
        default_factory=list, description="Layers whose work depends on their input's values: not counted."
    )
    memory: Memory
    ties: list[list[str]]
    params: list[ParamRow]
    layers: list[LayerRow]
    init: InitCoverage
    warnings: list[str]


def inspect_spec(spec: Spec, dtype: str | None = None, train: bool = False) -> Report:
    from netcfg.actions.model import build_model

    return report(build_model(spec, device="meta", dtype=dtype), train)


def report(built: Built, train: bool = False) -> Report:
    model = built.model
    groups = param_groups(model)
    ties = [list(g.names) for g in groups if len(g.names) > 1]
    params = _param_rows(model, built, ties)
    unique = sum(g.param.numel() for g in groups)
    leaf_flops = _leaf_flops(built)
    layers = _layer_rows(built, unique, leaf_flops)
    coverage, warnings = _init_coverage(built, groups)
    total_flops = sum(f for f in leaf_flops.values() if f is not None)
    inputs = {name: one.model_dump(mode="json", exclude_none=True) for name, one in built.spec.head.inputs.items()}
    return Report(
        name=built.spec.head.name,
        file=built.spec.file,
        input=next(iter(inputs.values())),
        inputs=inputs,
        outputs={name: {"shape": list(shape), "dtype": _dt(dtype)} for name, (shape, dtype) in built.outputs.items()},
        dtype=_dt(built.dtype),
        parameters=unique,
        state_dict_parameters=sum(p.numel() for _, p in model.named_parameters(remove_duplicate=False)),
        state_dict_entries=len(model.state_dict()),
        trainable=sum(g.param.numel() for g in groups if g.param.requires_grad),
        frozen=sum(g.param.numel() for g in groups if not g.param.requires_grad),
        buffers=sum(b.numel() for b in model.buffers()),
        bytes=_bytes(model),
        flops=total_flops,
        macs=total_flops // 2,
        flops_uncounted=[path for path, f in leaf_flops.items() if f is None],
        memory=_memory(built, groups, train),
        ties=ties,
        params=params,
        layers=layers,
        init=coverage,
        warnings=warnings,
    )


_dt = devices.dtype_name


def _bytes(model: nn.Module) -> dict[str, int]:
    by_dtype: dict[str, int] = {}
    tensors = {"parameters": list(model.parameters()), "buffers": list(model.buffers())}
    out = {kind: sum(t.numel() * t.element_size() for t in ts) for kind, ts in tensors.items()}
    for t in tensors["parameters"] + tensors["buffers"]:
        by_dtype[_dt(t.dtype)] = by_dtype.get(_dt(t.dtype), 0) + t.numel() * t.element_size()
    return {**out, **dict(sorted(by_dtype.items()))}


def _param_rows(model: nn.Module, built: Built, ties: list[list[str]]) -> list[ParamRow]:
    tie_of = {path: i for i, group in enumerate(ties) for path in group}
    rules = built.spec.head.init
    first_name = {id(p): n for n, p in reversed(list(model.named_parameters(remove_duplicate=False)))}
    rows = []
    for path, p in model.named_parameters(remove_duplicate=False):
        first = first_name[id(p)]
        index = built.init_rules.get(first)
        init = "default" if index is None else f"rule {index}: {rules[index].init.kind}"
        if first in built.pretrained:
            init = f"pretrained: {built.pretrained[first]}"
        rows.append(ParamRow(
            path=path, shape=list(p.shape), dtype=_dt(p.dtype), device=str(p.device), count=p.numel(),
            trainable=p.requires_grad, init=init, tie=tie_of.get(path),
        ))  # fmt: skip
    return rows


def _layer_rows(built: Built, total: int, leaf_flops: dict[str, int | None]) -> list[LayerRow]:
    flops_under = _accumulate(leaf_flops)
    modules = dict(built.model.named_modules(remove_duplicate=False))
    rows = []
    for path, module in modules.items():
        visit = built.visits.get(path)
        if visit is None:
            continue  # internal submodules of a layer (e.g. attention's projections)
        ins, out = visit.in_shapes, visit.out_shape
        flops = flops_under.get(path, 0)
        count = sum(p.numel() for p in module.parameters())
        rows.append(LayerRow(
            path=path, type=visit.type, depth=path.count(".") + 1 if path else 0,
            input_shapes=[list(s) for s in ins], output_shape=list(out), parameters=count,
            share=count / total if total else 0.0, flops=flops, macs=None if flops is None else flops // 2,
            computed={name: getattr(visit.node, name) for name in visit.node._computed},
        ))  # fmt: skip
    return rows


def _accumulate(leaf: dict[str, int | None]) -> dict[str, int | None]:
    """Add each leaf's FLOPs to the leaf and to every module above it (None, unknown, wins)."""
    total: dict[str, int | None] = {}
    for path, flops in leaf.items():
        parts = path.split(".") if path else []
        for i in range(len(parts) + 1):
            key = ".".join(parts[:i])
            before = total.get(key, 0)
            total[key] = None if before is None or flops is None else before + flops
    return total


def _leaf_flops(built: Built) -> dict[str, int | None]:
    """FLOPs of every leaf layer (and every later use of a shared module), by path."""
    modules = dict(built.model.named_modules(remove_duplicate=False))
    cache: dict[tuple, int] = {}
    out = {}
    for path, visit in built.visits.items():
        kind = REGISTRY.get(visit.type).kind
        if kind not in ("layer", "merge") and visit.type != "shared":
            continue
        module = modules[path]
        key = (id(module), tuple(visit.in_shapes))
        if key not in cache:
            cache[key] = _flops_of(built, visit, module)
        out[path] = cache[key]
    return out


def _flops_of(built: Built, visit, module: nn.Module) -> int | None:
    """The declaration's FLOP rule; FlopCounterMode on meta for a plugin or a shared composite."""
    node: Node = built.spec.shared[visit.node.ref] if isinstance(visit.node, Shared) else visit.node
    found = node.flops(visit.in_shapes, visit.out_shape)
    if found is not None:
        return found
    return flop_rules.counted(module, visit.in_shapes, visit.in_dtypes)


def _memory(built: Built, groups: list, train: bool) -> Memory:
    model = built.model
    size = torch.empty((), dtype=built.dtype).element_size()
    weights = sum(g.param.numel() * g.param.element_size() for g in groups)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    trainable = sum(g.param.numel() * g.param.element_size() for g in groups if g.param.requires_grad)
    at = ""
    if train:
        activations = _saved_activations(built, size)
        gradients, optimizer = trainable, 2 * trainable
    else:
        peak = memplan.plan(built.visits, size, built.spec.shared)
        activations, at = peak.bytes, memplan.running(peak)
        gradients = optimizer = 0
    total = weights + buffers + activations + gradients + optimizer
    return Memory(mode="train" if train else "inference", weights=weights, buffers=buffers,
                  activations=activations, activations_at=at, gradients=gradients, optimizer=optimizer,
                  total=total)  # fmt: skip


def _saved_activations(built: Built, size: int) -> int:
    """What autograd keeps for the backward pass, assuming every leaf layer saves its inputs and
    its output, and nothing else (attention's probabilities, dropout masks, a layer's temporaries
    are not counted; a tensor two layers save counts twice)."""
    total = 0
    for visit in built.visits.values():
        if REGISTRY.get(visit.type).kind in ("layer", "merge") or visit.type == "shared":
            ins, out = visit.in_shapes, visit.out_shape
            total += sum(prod(s) * _itemsize(d, size) for s, d in zip(ins, visit.in_dtypes, strict=True))
            total += prod(out) * size
    return total


def _itemsize(dtype: torch.dtype, float_size: int) -> int:
    return float_size if dtype.is_floating_point else torch.empty((), dtype=dtype).element_size()


def _init_coverage(built: Built, groups: list) -> tuple[InitCoverage, list[str]]:
    rules = built.spec.head.init
    counts = [0] * len(rules)
    for name, index in built.init_rules.items():
        counts[index] += name not in built.pretrained  # loaded afterwards: the rule's values are gone
    uses = [
        InitRuleUse(index=i, where=str(built.spec.loc(("init", i))), kind=r.init.kind, matched=counts[i])
        for i, r in enumerate(rules)
    ]
    firsts = [g.names[0] for g in groups]
    default = [n for n in firsts if n not in built.init_rules and n not in built.pretrained]
    loaded = {n: built.pretrained[n] for n in firsts if n in built.pretrained}
    unused = [i for i, n in enumerate(counts) if n == 0]
    return InitCoverage(rules=uses, default=default, pretrained=loaded, unused_rules=unused), list(built.warnings)
