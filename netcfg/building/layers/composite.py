"""Torch build functions of netcfg/catalogue/composite.py: sequential, parallel, residual, graph, shared.

The forward passes are kept lean: a graph precomputes, for each node, the positions
of its inputs in a flat list of values, so running it costs one list lookup per edge
on top of the layers themselves.
"""

from __future__ import annotations

import functools
from collections import OrderedDict

import torch
from torch import nn

from netcfg.building.layers.merges import Add, Mul, merge_module, merged
from netcfg.catalogue import composite as c
from netcfg.catalogue.base import Node
from netcfg.catalogue.registry import Made, builds
from netcfg.catalogue.shapes import ShapeError, fmt
from netcfg.errors import BuildError, Diagnostic


class Parallel(nn.Module):
    """Every branch on the same inputs; outputs merged."""

    def __init__(self, branches: OrderedDict, merge: nn.Module):
        super().__init__()
        for name, module in branches.items():
            self.add_module(name, module)
        self._names = list(branches)
        self.merge = merge

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        modules = self._modules  # looked up by name: a swapped-in child is used
        return self.merge(*[modules[name](*xs) for name in self._names])


class Residual(nn.Module):
    """body(x) + shortcut(x), shortcut defaulting to the identity."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut is None:
            return x + self.body(x)
        return self.shortcut(x) + self.body(x)


class Graph(nn.Module):
    """Runs named nodes in order; node i reads the values at positions steps[i].

    The plan holds child names, not modules, so a child replaced after building (as
    fusion or quantization tools do) is the one that runs. A two-input add or mul is
    computed inline: it is most of a residual network's nodes, and a module call costs
    twice the addition itself. A node with forward hooks (its own or global ones) is
    called as a module, so the hooks fire. Each value is let go once its last reader
    has run (the memory plan of netcfg/building/memplan.py counts on it)."""

    def __init__(self, nodes: OrderedDict, steps: list[list[int]], outputs: list[int], keys: list[str] | None = None,
                 names: tuple[str, ...] = ("input",), several: bool = False):  # fmt: skip
        super().__init__()
        n_inputs = len(names)
        self._input_names = names
        for name, module in nodes.items():
            self.add_module(name, module)
        released = releases(steps, outputs, n_inputs)
        self._plan = [
            (name, _inline(module, idx), idx, free)
            for (name, module), idx, free in zip(nodes.items(), steps, released, strict=True)
        ]
        self._output = outputs[0] if not several else None
        self._outputs = outputs
        self._keys = keys
        """Several outputs: returned as a dict with these keys (None: a tuple)."""

    def forward(self, *xs: torch.Tensor, **named: torch.Tensor):
        modules = self._modules
        values = list(xs) if not named and len(xs) == len(self._input_names) else self._bind(xs, named)
        hooked = _GLOBAL_HOOKS[0] or _GLOBAL_HOOKS[1]
        for name, inline, idx, free in self._plan:
            module = modules[name]
            if (
                inline is not None
                and type(module) is inline
                and not (hooked or module._forward_hooks or module._forward_pre_hooks)
            ):
                first, second = idx  # no local names: a value goes when the plan lets go of it
                values.append(values[first] + values[second] if inline is Add else values[first] * values[second])
            elif len(idx) == 1:
                values.append(module(values[idx[0]]))
            else:
                values.append(module(*[values[i] for i in idx]))
            for i in free:
                values[i] = None
        if self._output is not None:
            return values[self._output]
        if self._keys is None:
            return tuple(values[i] for i in self._outputs)
        return {key: values[i] for key, i in zip(self._keys, self._outputs, strict=True)}

    def _bind(self, xs: tuple, named: dict) -> list:
        """Inputs given by name (`model(ids=..., mask=...)`), in the graph's order."""
        if len(xs) > len(self._input_names):
            raise TypeError(
                f"{len(xs)} inputs given, the model takes {len(self._input_names)}: {', '.join(self._input_names)}"
            )
        unknown = [k for k in named if k not in self._input_names[len(xs) :]]
        if unknown:
            raise TypeError(
                f"unexpected or repeated input {unknown[0]!r}; the inputs are {', '.join(self._input_names)}"
            )
        missing = [k for k in self._input_names[len(xs) :] if k not in named]
        if missing:
            raise TypeError(f"missing input {missing[0]!r}; the inputs are {', '.join(self._input_names)}")
        return [*xs, *(named[k] for k in self._input_names[len(xs) :])]


def releases(steps: list[list[int]], outputs: list[int], n_inputs: int = 1) -> list[tuple[int, ...]]:
    """For each step of a graph, the values (inputs first, then step i's as n_inputs + i) that
    no later step reads, to let go of after it: each value lives until its last reader has run;
    a value no step reads goes right after the step that made it (an input no step reads, after
    the first step); the outputs stay."""
    last = {i + n_inputs: i for i in range(len(steps))}  # unread: gone after its own step
    last.update({i: 0 for i in range(n_inputs)})
    for i, idx in enumerate(steps):
        for j in idx:
            last[j] = i
    after: list[list[int]] = [[] for _ in steps]
    kept = set(outputs)
    for value, step in last.items():
        if value not in kept:
            after[step].append(value)
    return [tuple(sorted(values)) for values in after]


# torch's registries of hooks for every module (register_module_forward_hook and friends).
_GLOBAL_HOOKS = (nn.modules.module._global_forward_hooks, nn.modules.module._global_forward_pre_hooks)


def _inline(module: nn.Module, idx: list[int]) -> type | None:
    return type(module) if type(module) in (Add, Mul) and len(idx) == 2 else None


@functools.cache
def _reserved(cls: type) -> frozenset:
    """Names a child of `cls` cannot have: its attributes and methods (`forward`, `training`, ...)."""
    return (
        frozenset(dir(cls))
        | frozenset(vars(nn.Module()))
        | {"merge", "_names", "_plan", "_output", "_outputs", "_keys", "_input_names", "_every_layer"}
    )


def _check_name(ctx, node: Node, name: str, cls: type, key: str | tuple = "name") -> None:
    if name in _reserved(cls):
        ctx.fail(node, f"'{name}' cannot name a module: it is an attribute of every {cls.__name__} module "
                       "(pick another name)", key)  # fmt: skip


class Chain(nn.Sequential):
    """nn.Sequential (the same names) given several inputs: the first layer reads them all, or
    with `every_layer` each layer reads the previous one's output and the inputs after the first."""

    def __init__(self, modules: OrderedDict, every_layer: bool):
        super().__init__(modules)
        self._every_layer = every_layer

    def forward(self, x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        for module in self:
            x = module(x, *rest)
            rest = rest if self._every_layer else ()
        return x


@builds("sequential")
def sequential(a: c.Sequential, xs: list, ctx):
    modules: OrderedDict = OrderedDict()
    every = a.extra_inputs == "every_layer"
    cls = Chain if len(xs) > 1 else nn.Sequential
    current = xs
    for i, node in enumerate(a.layers):
        name = node.name or str(i)
        _check_name(ctx, node, name, cls)
        module, out = ctx.build(node, current, name)
        modules[name] = module
        current = [out, *xs[1:]] if every else [out]
    return Made(Chain(modules, every) if cls is Chain else nn.Sequential(modules), current[0])


@builds("parallel")
def parallel(a: c.Parallel, xs: list, ctx):
    branches: OrderedDict = OrderedDict()
    outs = []
    for i, node in enumerate(a.branches):
        name = node.name or str(i)
        _check_name(ctx, node, name, Parallel)
        branches[name], out = ctx.build(node, xs, name)
        outs.append(out)
    try:
        out = merged(a.merge, a.dim, outs)
    except ShapeError as exc:
        raise ShapeError(f"branch outputs: {exc}", key="merge") from None
    return Made(Parallel(branches, merge_module(a.merge, a.dim)), out)


@builds("residual")
def residual(a: c.Residual, xs: list, ctx):
    body, out = ctx.build(a.body, xs, "body")
    shortcut, short_out = ctx.build(a.shortcut, xs, "shortcut") if a.shortcut is not None else (None, xs[0])
    if tuple(out.shape) != tuple(short_out.shape):
        raise ShapeError(f"body output {fmt(out.shape)} and shortcut output {fmt(short_out.shape)} differ", key="body")
    return Made(Residual(body, shortcut), merged("add", -1, [out, short_out]))


@builds("graph")
def graph(a: c.Graph, xs: list, ctx):
    names = a.input_list()
    if len(xs) != len(names):
        given = f"input_names lists {len(names)}" if a.input_names else "name them with `input_names: [...]`"
        if not a.input_names and isinstance(a.inputs, list) and len(a.inputs) > 1:
            given = "it reads one node twice: name its inputs with `input_names: [...]`"
        raise ShapeError(
            f"this graph is given {len(xs)} inputs ({given})", key="input_names" if a.input_names else None
        )
    problems = _ref_problems(ctx, a) + _output_problems(ctx, a)
    if problems:  # in the order of the file
        raise BuildError(sorted(problems, key=lambda d: (d.loc.line, d.loc.col) if d.loc else (0, 0)))
    values = list(xs)
    modules: OrderedDict = OrderedDict()
    steps, outputs = a.plan()
    for (name, node), idx in zip(a.nodes.items(), steps, strict=True):
        _check_name(ctx, node, name, Graph, ())
        modules[name], out = ctx.build(node, [values[i] for i in idx], name)
        values.append(out)
    several = not isinstance(a.output, (str, type(None)))
    keys = list(a.output) if isinstance(a.output, dict) else None
    module = Graph(modules, steps, outputs, keys, tuple(names), several)
    if not several:
        return Made(module, values[outputs[0]])
    outs = [values[i] for i in outputs]
    return Made(module, dict(zip(keys, outs, strict=True)) if keys else tuple(outs))


def _output_problems(ctx, graph: c.Graph) -> list[Diagnostic]:
    """Outputs that name no node (or a removed one), and several outputs below the model's top."""
    from netcfg.spec.validate import suggest

    problems = []
    if not isinstance(graph.output, (str, type(None))) and graph._path != ("model",):
        message = "several outputs are only for the model's top graph (`model:`); return one here"
        problems.append(Diagnostic(ctx.spec.loc(graph._path + ("output",)), message))
    wanted = {graph.output: ()} if isinstance(graph.output, str) else {}
    if isinstance(graph.output, list):
        wanted = {name: (i,) for i, name in enumerate(graph.output)}
    elif isinstance(graph.output, dict):
        wanted = {name: (key,) for key, name in graph.output.items()}
    for name, key in wanted.items():
        if name in graph.nodes:
            continue
        where = ctx.spec.loc(graph._path + ("output", *key))
        removed = ctx.spec.dropped.get(graph._path + ("nodes", name))
        if removed is not None:
            problems.append(
                Diagnostic(where, f"output '{name}' was removed by its `if` (line {removed.line}); name another node")
            )
        elif name in graph.input_list():
            problems.append(Diagnostic(where, f"output '{name}' is an input of the graph; name a node"))
        else:
            problems.append(
                Diagnostic(where, f"output '{name}' is not a node of this graph{suggest(name, list(graph.nodes))}")
            )
    return problems


def _ref_problems(ctx, graph: c.Graph) -> list[Diagnostic]:
    """Every input a graph node reads that is not an earlier node, before building: the first
    MAX_LISTED said one by one (with a did-you-mean among the earlier nodes), the others counted."""
    from netcfg.suggest import MAX_LISTED, suggest

    inputs = graph.input_list()
    known, previous, problems, more, first_unlisted = dict.fromkeys(inputs), inputs[0], [], 0, None
    read: set[str] = set()
    for name, node in graph.nodes.items():
        if name in inputs:
            what = "the graph's input" if inputs == ["input"] else f"an input of the graph ({', '.join(inputs)})"
            problems.append(Diagnostic(ctx.spec.loc(node._path), f"'{name}' names {what}; pick another node name"))
        refs = [node.inputs] if isinstance(node.inputs, str) else (node.inputs or [previous])
        read.update(refs)
        for position, ref in enumerate(refs):
            if ref in known:
                continue
            key = ("inputs", position) if isinstance(node.inputs, list) else ("inputs",)
            if len(problems) == MAX_LISTED:
                more += 1
                first_unlisted = first_unlisted or node._path + key
                continue
            removed = ctx.spec.dropped.get(graph._path + ("nodes", ref))
            if removed is not None:
                message = f"input '{ref}' was removed by its `if` (line {removed.line}); read another node"
            elif ref in graph.nodes:
                message = f"input '{ref}' is a later node: a graph runs in order, so it cannot read it (cycle?)"
            else:
                message = f"unknown input '{ref}'{suggest(ref, list(known))}"
            problems.append(Diagnostic(ctx.spec.loc(node._path + key), message))
        known[name] = None
        previous = name
    if more:
        problems.append(
            Diagnostic(ctx.spec.loc(first_unlisted), f"... and {more:,} more inputs that are not earlier nodes")
        )
    return problems + _unread(ctx, graph, read)


def _unread(ctx, graph: c.Graph, read: set[str]) -> list[Diagnostic]:
    """An input no node reads is a mistake (a misspelt `inputs:`), said where the input is named."""
    problems = []
    names = graph.input_list()
    for i, name in enumerate(names if names != ["input"] else ()):  # the one unnamed input: as before, not checked
        if name in read:
            continue
        if graph._path == ("model",) and ctx.spec.head.named_inputs:  # named by the spec's `input:`
            where = ctx.spec.loc(ctx.spec.head.input_path(name))
        elif graph.input_names:
            where = ctx.spec.loc(graph._path + ("input_names", i))
        else:  # named by its own `inputs:`
            where = ctx.spec.loc(graph._path + ("inputs", i))
        problems.append(Diagnostic(where, f"input '{name}' is read by no node of the graph"))
    return problems


@builds("shared")
def shared(a: c.Shared, xs: list, ctx):
    return Made(*ctx.use_shared(a, xs))
