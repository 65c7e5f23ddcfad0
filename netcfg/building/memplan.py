"""How much memory a forward pass will need, planned before it runs.

The forward pass is replayed from the builder's records (each module's input and output
shapes and dtypes, in execution order) with the lifetimes PyTorch gives its values, in eval
mode without autograd, as `run` and `bench` run it:

- a module's inputs stay alive while it runs (its caller holds them), and so does the input;
- in a sequential, a value goes once the next layer has run (nn.Sequential rebinds its name); its
  first layer reads all its inputs, every layer does with `extra_inputs: every_layer`;
- a residual keeps its input while the shortcut and the body run, then both their outputs
  until the sum is made;
- a graph keeps each node's value until its last reader has run (the Graph module lets go of
  it then);
- a parallel node keeps its input until the last branch has run, and every branch's output
  until the merge;
- shared modules and repeats are planned as their expansions (a later use of a shared module
  with the records of its own probe build);
- a leaf layer allocates its output and, while it runs, the temporaries its declaration's
  `workspace` rule counts (attention's scores, a convolution's reordered copies, ...); a layer
  whose output may be a view of its input (`aliases`: reshape, select, dropout ...) allocates
  nothing that outlives it and keeps the input's memory alive as long as the view lives.

The peak of the memory alive at once is an upper bound of what PyTorch's allocator holds for
the activations: tests/building/test_memplan.py and benchmarks/bench_activation_memory.py check it
against PyTorch's CPU allocator on every layer type and every shipped config.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from math import prod
from typing import Any

import torch

from netcfg.building.layers.composite import releases
from netcfg.catalogue.registry import REGISTRY
from netcfg.errors import BuildError, Loc
from netcfg.text import human_bytes

Value = tuple[int, ...]
"""The storages a value keeps alive (a view shares its input's)."""


@dataclass(frozen=True)
class Peak:
    """The planned peak of live activation memory of one forward pass."""

    bytes: int
    path: str
    """The module running when it is reached ('' the model or its input)."""
    type: str
    """That module's layer type."""


def plan(visits: dict[str, Any], itemsize: int, shared: dict[str, Any] | None = None) -> Peak:
    """The peak for the builder's records `visits` (module path -> Visit), floats of `itemsize`
    bytes (the model's dtype); `shared`: the spec's shared modules (top-level `shared:`)."""
    root = visits.get("")
    if root is None:
        return Peak(0, "", "")
    replay = _Replay(itemsize, shared or {})
    xs = [replay.allocate(replay.nbytes(s, d)) for s, d in zip(root.in_shapes, root.in_dtypes, strict=True)]
    replay.note(0, "", "input")
    replay.run("", root.node, xs, visits)
    return replay.peak


def check(
    visits: dict[str, Any], itemsize: int, weights: int, available: int, device, spec, where: Loc | None = None
) -> Peak:
    """Refuse (BuildError at `where`, default the spec file) when `weights` bytes plus the planned
    activations of `visits` exceed `available`."""
    peak = plan(visits, itemsize, spec.shared)
    needed = weights + peak.bytes
    if needed > available:
        at = f", at their peak in layer '{peak.path or 'model'}' ({peak.type})" if running(peak) else ""
        batch = visits[""].in_shapes[0][0] if visits[""].in_shapes[0] else 1
        raise BuildError(
            f"running this model needs about {human_bytes(needed)} (weights {human_bytes(weights)}, activations "
            f"{human_bytes(peak.bytes)} at batch {batch}{at}), {human_bytes(available)} are available on {device} "
            "(inspect it with --device meta, or pass --no-memory-check)",
            where or Loc(spec.file),
        )
    return peak


def running(peak: Peak) -> str:
    """The module running at the peak, as 'path (type)'; '' when the input alone is the peak."""
    return f"{peak.path or 'model'} ({peak.type})" if peak.type not in ("", "input") else ""


class _Replay:
    """The forward pass replayed as allocations and releases of reference-counted storages."""

    def __init__(self, itemsize: int, shared: dict[str, Any]):
        self.itemsize = itemsize
        self.shared = shared
        self.sizes: dict[int, int] = {}
        self.refs: dict[int, int] = {}
        self.ids = itertools.count()
        self.live = 0
        self.peak = Peak(0, "", "")

    # ---------------------------------------------------------------- storages

    def nbytes(self, shape: tuple, dtype: torch.dtype | None) -> int:
        """Bytes of a value of this shape: floats in the model's dtype (the model is cast to it,
        and so is a float input), other dtypes as they are."""
        if dtype is None or dtype.is_floating_point:
            size = self.itemsize
        elif dtype.is_complex:
            size = 2 * max(self.itemsize, 4)
        else:
            size = dtype.itemsize
        return prod(int(s) for s in shape) * size

    def allocate(self, nbytes: int) -> Value:
        """A new storage, held once (by whoever receives the value)."""
        sid = next(self.ids)
        self.sizes[sid], self.refs[sid] = nbytes, 1
        self.live += nbytes
        return (sid,)

    def hold(self, value: Value) -> Value:
        for sid in value:
            self.refs[sid] += 1
        return value

    def drop(self, value: Value | None) -> None:
        for sid in value or ():
            self.refs[sid] -= 1
            if not self.refs[sid]:
                self.live -= self.sizes.pop(sid)

    def note(self, extra: int, path: str, kind: str) -> None:
        """What is alive now, plus `extra` bytes of temporaries, may be the peak."""
        if self.live + extra > self.peak.bytes:
            self.peak = Peak(self.live + extra, path, kind)

    # ---------------------------------------------------------------- modules

    def run(self, path: str, node, inputs: list[Value], visits: dict[str, Any]) -> Value:
        """Replay module `path` (made by `node`) on `inputs`, which its caller holds; returns its
        output, held once for the caller."""
        visit = visits[path]
        kind = node.type
        if kind == "shared":
            if visit.parts is None:  # the first use: its records are in the tree, under its node
                return self.run(path, visit.node, inputs, visits)
            return self.run(path, self.shared[node.ref], inputs, visit.parts)
        step = _COMPOSITES.get(kind)
        if step is not None:
            return step(self, path, node, inputs, visits)
        entry = REGISTRY.get(kind)
        if entry is not None and entry.kind in ("layer", "merge"):
            return self.leaf(path, node, visit, inputs)
        return self.unknown(path, node, visit, inputs, visits)

    def leaf(self, path: str, node, visit, inputs: list[Value]) -> Value:
        node = visit.node  # as built: arguments computed from the input's shape are numbers there
        out = self.nbytes(visit.out_shape, visit.out_dtype)
        if node.aliases:  # a view (or, when the layout allows none, a copy while it runs)
            self.note(out, path, node.type)
            return self.hold(inputs[0])
        value = self.allocate(out)
        work = node.workspace(visit.in_shapes, visit.out_shape, self.itemsize)
        if work is None:  # a plugin without the rule: twice its input and output
            work = 2 * (out + sum(self.nbytes(s, d) for s, d in zip(visit.in_shapes, visit.in_dtypes, strict=True)))
        self.note(work, path, node.type)
        return value

    def unknown(self, path: str, node, visit, inputs: list[Value], visits: dict[str, Any]) -> Value:
        """A module whose lifetimes are not known (a plugin's composite): every leaf under it at
        once, with its temporaries."""
        prefix = f"{path}." if path else ""
        parts = [v for p, v in visits.items() if p.startswith(prefix) and p != path]
        total = 0
        for part in parts:
            work = part.node.workspace(part.in_shapes, part.out_shape, self.itemsize) or 0
            total += self.nbytes(part.out_shape, part.out_dtype) + work
        value = self.allocate(self.nbytes(visit.out_shape, visit.out_dtype))
        self.note(total, path, node.type)
        return value

    def sequential(self, path: str, node, inputs: list[Value], visits) -> Value:
        current = self.hold(inputs[0])  # nn.Sequential's own name for the value
        for i, child in enumerate(node.layers):
            rest = inputs[1:] if i == 0 or node.extra_inputs == "every_layer" else []  # the caller holds them
            out = self.run(_child(path, child.name or str(i)), child, [current, *rest], visits)
            self.drop(current)
            current = out
        return current

    def parallel(self, path: str, node, inputs: list[Value], visits) -> Value:
        outs = [
            self.run(_child(path, child.name or str(i)), child, inputs, visits) for i, child in enumerate(node.branches)
        ]
        merged = self.nbytes(visits[path].out_shape, visits[path].out_dtype)
        value = self.allocate(merged)
        pairwise = merged if node.merge in ("add", "mul") and len(outs) > 2 else 0  # ((a + b) + c): two at once
        self.note(pairwise, path, node.type)
        for out in outs:
            self.drop(out)
        return value

    def residual(self, path: str, node, inputs: list[Value], visits) -> Value:
        short = self.run(_child(path, "shortcut"), node.shortcut, inputs, visits) if node.shortcut else None
        body = self.run(_child(path, "body"), node.body, inputs, visits)
        value = self.allocate(self.nbytes(visits[path].out_shape, visits[path].out_dtype))  # the sum
        self.note(0, path, node.type)
        self.drop(body)
        self.drop(short)
        return value

    def graph(self, path: str, node, inputs: list[Value], visits) -> Value:
        steps, outputs = node.plan()
        values: list[Value | None] = [self.hold(x) for x in inputs]  # the Graph module's list of values
        released = releases(steps, outputs, len(inputs))
        for (name, child), idx, free in zip(node.nodes.items(), steps, released, strict=True):
            values.append(self.run(_child(path, name), child, [values[i] for i in idx], visits))
            for i in free:
                self.drop(values[i])
                values[i] = None
        kept = [values[i] for i in outputs]
        for i, value in enumerate(values):
            if i not in outputs:
                self.drop(value)
        return tuple(sid for value in kept for sid in value)  # several outputs: all their storages


_COMPOSITES = {
    "sequential": _Replay.sequential,
    "parallel": _Replay.parallel,
    "residual": _Replay.residual,
    "graph": _Replay.graph,
}


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
