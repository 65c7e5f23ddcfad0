"""Spec -> nn.Module. No printing, no file I/O.

1. Build node by node, in module order, under the seed: each layer is constructed on the
   target device from its args and the shape of the input reaching it. Shapes travel
   as meta tensors; a layer's output shape is computed from its args (or, for layers
   without a formula, by running a meta copy), so nothing is run on real data and a
   meta build allocates nothing.
2. Check and apply parameter ties.
3. Apply the initializer rules (on meta: only check them); cast to the spec's dtype.
"""

from __future__ import annotations

import contextlib
import gc
import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import netcfg.building.layers  # noqa: F401  (attaches the torch build functions to the registry)
from netcfg.building import devices, init, memory, memplan, ties
from netcfg.building.computed import computed
from netcfg.catalogue.base import Node
from netcfg.catalogue.registry import REGISTRY, Registry
from netcfg.catalogue.shapes import ShapeError, fmt
from netcfg.errors import BuildError, Diagnostic, Loc
from netcfg.spec.model import InputSpec, Spec

# A real build counts the whole model on meta first once it has allocated this much (small
# models, nearly all, never pay for the second pass).
LOOK_AHEAD_BYTES = 1 << 30

_TORCH_ERRORS = (ShapeError, ValueError, RuntimeError, TypeError, IndexError, NotImplementedError)


@dataclass
class Visit:
    """What the builder learned about one module of the tree."""

    node: Node
    """The spec node that made it (a later use of a shared module: the `shared` node)."""
    loc: Loc
    """The spec node's location."""
    in_shapes: list[tuple]
    """Shapes of its inputs for the sample input."""
    out_shape: tuple
    """Shape of its output for the sample input."""
    in_dtypes: list[torch.dtype]
    """Dtypes of its inputs for the sample input."""
    out_dtype: torch.dtype | None = None
    """Dtype of its output for the sample input."""
    parts: dict[str, Visit] | None = None
    """A later use of a shared module: the records of its parts for this use's inputs (the first
    use's records are in the tree itself), for the memory plan."""

    @property
    def type(self) -> str:
        return self.node.type


@dataclass
class Built:
    """A built model and what the builder learned about it."""

    model: nn.Module
    spec: Spec
    device: torch.device
    device_note: str
    dtype: torch.dtype
    seed: int
    visits: dict[str, Visit] = field(default_factory=dict)
    """Module path ('' is the root) -> its record, in the order building finished (leaves in execution order)."""
    init_rules: dict[str, int] = field(default_factory=dict)
    """Parameter path -> index of the init rule that set it (absent: PyTorch default)."""
    warnings: list[str] = field(default_factory=list)
    """`file:line:col: warning: ...` lines (for example an init rule that sets nothing)."""
    pretrained: dict[str, str] = field(default_factory=dict)
    """state_dict key -> 'file:key' it was loaded from by the spec's `pretrained:` (after the init rules)."""
    outputs: dict[str, tuple[tuple, torch.dtype]] = field(default_factory=dict)
    """The model's outputs by name ('output' for one), shape and dtype for the sample inputs."""

    @property
    def types(self) -> dict[str, str]:
        """Module path -> layer type of the spec node that made it."""
        return types_of(self.visits)


def types_of(visits: dict[str, Visit]) -> dict[str, str]:
    return {path: visit.node.type for path, visit in visits.items()}


class Builder:
    """Builds the module tree on the meta device; passed to build functions as `ctx`."""

    def __init__(
        self,
        spec: Spec,
        registry: Registry,
        device: torch.device,
        budget: int | None = None,
        forward_dtype: torch.dtype | None = None,
    ):
        self.spec = spec
        self.registry = registry
        self.device = device
        self.on_meta = device.type == "meta"
        self.on_cpu = device.type == "cpu"
        self.probing = False
        self.budget = budget
        """Bytes the layers may take on the device (None: no limit)."""
        self.allocated = 0
        self.look_ahead_at = None if budget is None or self.on_meta else min(LOOK_AHEAD_BYTES, budget // 8)
        """Allocated bytes at which the whole model is first counted on meta (once)."""
        self.forward_dtype = forward_dtype
        """Set: the budget must hold the weights and a forward pass of the sample input in this dtype."""
        self.forward_checked = False
        self.prefix: list[str] = []
        self.visits: dict[str, Visit] = {}
        self.shared: dict[str, tuple[nn.Module, str, list[tuple]]] = {}
        self.root_inputs: list[torch.Tensor] = []
        """The sample inputs' meta tensors: a layer reading one directly knows its value range."""
        self.outputs: dict[str, tuple[tuple, torch.dtype]] = {}
        """The model's outputs by name: shape and dtype for the sample inputs."""
        self.building_shared: set[str] = set()
        self.probes: dict[str, dict[str, Visit]] = {}
        """Records of the probe build of a later use of a shared module, by path."""
        self.on_built = None
        """Called as on_built(path, module, leaf) after each module is constructed (not probes):
        sharded materialization keeps each layer's shard and drops the layer (building/distributed.py)."""

    def path(self, name: str | None = None) -> str:
        return ".".join(self.prefix + ([name] if name else []))

    def fail(self, node: Node, message: str, key: str | tuple | None = None) -> None:
        where = node._path + (key if isinstance(key, tuple) else (key,) if key else ())
        raise BuildError(message, self.spec.loc(where))

    def build(self, node: Node, xs: list[torch.Tensor], name: str | None = None) -> tuple[nn.Module, torch.Tensor]:
        """Build `node` as child `name` of the current module, for inputs `xs` (meta)."""
        path = self.path(name)
        entry = self.registry.get(node.type)
        if entry.kind == "layer" and len(xs) != len(node.input_roles()):
            at = "inputs" if "inputs" in node.model_fields_set else None
            self.fail(node, _arity_problem(node, path, len(xs)) + self._root_inputs_hint(xs), at)
        node = computed(node, xs, path, self.spec)  # arguments read from the input's shape, computed now
        if name:
            self.prefix.append(name)
        try:
            module, out = self._construct(entry, node, xs, path)
        finally:
            if name:
                self.prefix.pop()
        if not node.trainable:
            module.requires_grad_(False)
        if self.on_built is not None and not self.probing:
            self.on_built(path, module, entry.kind in ("layer", "merge"))
        if path not in self.visits:
            shapes = [tuple(x.shape) for x in xs]
            first = out if isinstance(out, torch.Tensor) else next(iter(named_outputs(out, node).values()))
            self.visits[path] = Visit(
                node, self.spec.loc(node._path), shapes, tuple(first.shape), [x.dtype for x in xs], first.dtype,
                self.probes.pop(path, None),
            )  # fmt: skip
        return module, out

    def _root_inputs_hint(self, xs: list[torch.Tensor]) -> str:
        """How to read the model's several inputs, when a layer was given all of them."""
        several = len(self.root_inputs) > 1 and len(xs) == len(self.root_inputs)
        if several and all(x is r for x, r in zip(xs, self.root_inputs, strict=True)):
            names = ", ".join(self.spec.head.inputs)
            return f" (the model's inputs {names}: make `model:` a graph that reads them by name)"
        return ""

    def declared_input(self, x: torch.Tensor) -> tuple[str, InputSpec | None]:
        """(name, declared input) when `x` is one of the sample inputs itself; else ('', None)."""
        for (name, declared), root in zip(self.spec.head.inputs.items(), self.root_inputs, strict=False):
            if x is root:
                return name, declared
        return "", None

    def build_model(self) -> nn.Module:
        """Build the spec's model for its sample inputs (meta tensors), recording its outputs."""
        self.root_inputs = sample_inputs(self.spec, "meta")
        model, out = self.build(self.spec.model, list(self.root_inputs))
        self.outputs = {name: (tuple(t.shape), t.dtype) for name, t in named_outputs(out, self.spec.model).items()}
        return model

    def _construct(self, entry, node: Node, xs: list, path: str) -> tuple[nn.Module, torch.Tensor]:
        build = self.registry.builder(node.type)
        leaf = entry.kind in ("layer", "merge")
        try:
            ruled = self._ruled_output(node, xs) if leaf else None
            if leaf and self.budget is not None and not self.probing:
                self._reserve(build, node, xs, path)
            with self._placement():
                module, out = build(node, xs, self)
            if out is None:
                out = ruled if ruled is not None else self.run_meta(self._on_meta(module, build, node, xs), xs)
            return module, out
        except _TORCH_ERRORS as exc:
            shapes = ", ".join(fmt(x.shape) for x in xs)
            key = getattr(exc, "key", None)  # ShapeError names the argument at fault
            where = node._path + ((key,) if key and key in node.model_fields_set else ())
            raise BuildError(
                f"layer '{_show(path)}' ({node.type}) with input {shapes}: {_first_line(exc)}",
                self.spec.loc(where),
            ) from exc

    def _ruled_output(self, node: Node, xs: list) -> torch.Tensor | None:
        """The layer's meta output from its declaration's rules (None: unknown, a plugin)."""
        dtype_name = node.out_dtype([devices.dtype_name(x.dtype) for x in xs])  # first: ids need an embedding
        shape = node.out_shape([tuple(int(s) for s in x.shape) for x in xs])
        if shape is None:
            return None
        dtype = devices.BY_NAME[dtype_name] if dtype_name else _promoted(xs)
        if node.passes_input and shape == tuple(xs[0].shape) and dtype == xs[0].dtype:
            return xs[0]  # the sample input itself, still: an embedding reading it checks its declared id range
        return torch.empty(shape, dtype=dtype, device="meta")

    def _reserve(self, build, node: Node, xs: list, path: str) -> None:
        """Count the layer's bytes before allocating them; refuse past the budget."""
        count = node.elements([tuple(x.shape) for x in xs])
        if count is None:  # a plugin layer: construct it on meta (free) to count
            with _meta_construction():
                module = build(node, xs, self).module
            count = sum(t.numel() for t in [*module.parameters(), *module.buffers()])
        self.allocated += count * memory.BYTES_PER_ELEMENT
        if self.look_ahead_at is not None and self.allocated > self.look_ahead_at:
            self.look_ahead_at = None
            self._count_ahead()
        if self.allocated > self.budget:
            raise BuildError(
                f"not enough memory on {self.device}: the layers up to '{_show(path)}' ({node.type}) need "
                f"{self.allocated:,} bytes, {self.budget:,} are available (inspect it with --device meta, "
                "or pass --no-memory-check)",
                self.spec.loc(node._path),
            )

    def _count_ahead(self) -> None:
        """Build the whole model on meta (free) with the same budget: a model too large for the
        device is refused here, at the layer that would pass the budget, having allocated at most
        LOOK_AHEAD_BYTES, instead of after filling the memory layer by layer."""
        ahead = Builder(self.spec, self.registry, torch.device("meta"), self.budget)
        ahead.device = self.device  # the error names the real device
        with torch.random.fork_rng(devices=[]):  # whatever a plugin does, the real build's draws stay the same
            ahead.build_model()
        if self.forward_dtype is not None:
            weights = ahead.allocated // memory.BYTES_PER_ELEMENT * self.forward_dtype.itemsize  # once cast
            self.check_forward(ahead.visits, weights)

    def check_forward(self, visits: dict[str, Visit], weights: int) -> None:
        """The weights and a forward pass of the sample input must fit in the budget together."""
        _check_input_fits(self.spec, self.device)  # its own message
        memplan.check(visits, self.forward_dtype.itemsize, weights, self.budget, self.device, self.spec)
        self.forward_checked = True

    def _placement(self):
        """Where constructors put their tensors: the target device, or meta (free) when probing."""
        if self.probing or self.on_meta:
            return _meta_construction()
        if self.on_cpu:
            return _NOTHING  # the default: no per-op dispatch cost
        return self.device

    def _on_meta(self, module: nn.Module, build, node: Node, xs: list) -> nn.Module:
        """A meta copy of a layer whose output shape is learned by running it (plugins)."""
        if self.probing or self.on_meta:
            return module
        with _meta_construction():
            return build(node, xs, self).module

    def run_meta(self, module: nn.Module, xs: list) -> torch.Tensor:
        with torch.no_grad():
            out = module(*xs)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"the layer returned {type(out).__name__}, not a tensor")
        return out

    def use_shared(self, use: Node, xs: list) -> tuple[nn.Module, torch.Tensor]:
        """First use builds the shared module here; later uses reuse the same object."""
        ref = use.ref
        node = self.spec.shared[ref]
        here = self.path()
        if ref in self.building_shared:
            raise BuildError(f"shared module '{ref}' uses itself", self.spec.loc(use._path))
        if ref not in self.shared:
            self.building_shared.add(ref)
            with _Detached(self):
                module, out = self.build(node, xs)
            self.building_shared.discard(ref)
            self.shared[ref] = (module, here, [tuple(x.shape) for x in xs])
            return module, out
        module, first, first_shapes = self.shared[ref]
        built_for = ", ".join(fmt(s) for s in first_shapes)
        shapes = ", ".join(fmt(x.shape) for x in xs)
        problem = (
            f"shared module '{ref}' (built at '{_show(first)}' for input {built_for}) "
            f"cannot take input {shapes} at '{_show(here)}'"
        )
        # Build a throw-away copy for these inputs (on meta: free): its output is this use's
        # output, and its parameter shapes must be the shared module's.
        try:
            with _Detached(self), _Scratch(self) as records:
                self.probing = True
                probe, out = self.build(node, xs)
            self.probes[here] = records
        except BuildError as exc:
            raise BuildError(f"{problem}: {exc.diagnostics[0].message}", self.spec.loc(use._path)) from exc
        if _param_shapes(probe) != _param_shapes(module):
            raise BuildError(f"{problem}: its parameters have other shapes", self.spec.loc(use._path))
        return module, out


def _promoted(xs: list) -> torch.dtype:
    dtype = xs[0].dtype
    for x in xs[1:]:
        dtype = torch.promote_types(dtype, x.dtype)
    return dtype


def _param_shapes(module: nn.Module) -> list[tuple]:
    return [tuple(p.shape) for p in module.parameters()]


class _Scratch:
    """Builds inside it leave no records (a probe build of a shared module)."""

    def __init__(self, builder: Builder):
        self.builder = builder

    def __enter__(self) -> dict[str, Visit]:
        self.saved = self.builder.visits
        self.builder.visits = {}
        return self.builder.visits

    def __exit__(self, *exc) -> None:
        self.builder.visits = self.saved
        self.builder.probing = False


_NOTHING = contextlib.nullcontext()


@contextlib.contextmanager
def _meta_construction():
    with torch.device("meta"), _SkipMetaInit():
        yield


class _SkipMetaInit(TorchFunctionMode):
    """Skips the random fills a constructor runs on its meta parameters.

    Meta tensors hold no values, so filling them is pointless, and the first meta
    `normal_` in a process costs seconds (it loads PyTorch's Python decompositions).
    Real builds construct on the target device instead, with their normal initialization.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _FILLS:
            target = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target
        return func(*args, **kwargs)


_FILLS = {
    torch.Tensor.normal_,
    torch.Tensor.uniform_,
    torch.Tensor.random_,
    torch.Tensor.bernoulli_,
    torch.Tensor.exponential_,
    torch.Tensor.log_normal_,
    torch.Tensor.cauchy_,
    torch.Tensor.geometric_,
    nn.init.normal_,
    nn.init.uniform_,
    nn.init.trunc_normal_,
    nn.init.kaiming_uniform_,
    nn.init.kaiming_normal_,
    nn.init.xavier_uniform_,
    nn.init.xavier_normal_,
    nn.init.orthogonal_,
    nn.init.sparse_,
    nn.init.constant_,
    nn.init.ones_,
    nn.init.zeros_,
}


class _Detached:
    """A shared module is built as if at the place of its first use (no extra name level)."""

    def __init__(self, builder: Builder):
        self.builder = builder

    def __enter__(self) -> None:
        self.saved = list(self.builder.prefix)

    def __exit__(self, *exc) -> None:
        self.builder.prefix = self.saved


def _arity_problem(node: Node, path: str, given: int) -> str:
    roles = node.input_roles()
    wanted = "one input" if len(roles) == 1 else f"{len(roles)} inputs ({', '.join(roles)})"
    return f"layer '{_show(path)}' ({node.type}) takes {wanted}, got {given}"


def _show(path: str) -> str:
    return path or "model"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def sample_inputs(spec: Spec, device: torch.device | str = "cpu", seed: int | None = None) -> list[torch.Tensor]:
    """The spec's sample inputs in order, drawn on the CPU from `seed` (one generator, input after
    input) so every device sees the same values; the first is the single-input spec's input."""
    if torch.device(device).type == "meta":
        return [
            torch.empty(one.shape, dtype=devices.DTYPES[one.dtype], device="meta") for one in spec.head.inputs.values()
        ]
    _check_input_fits(spec, torch.device(device))
    gen = torch.Generator().manual_seed(spec.head.seed if seed is None else seed)
    return [_draw(one, gen).to(device=device) for one in spec.head.inputs.values()]


def sample_input(spec: Spec, device: torch.device | str = "cpu", seed: int | None = None) -> torch.Tensor:
    """The first sample input (the only one of a spec with one input)."""
    return sample_inputs(spec, device, seed)[0]


def _draw(inp: InputSpec, gen: torch.Generator) -> torch.Tensor:
    dtype = devices.DTYPES[inp.dtype]
    if dtype.is_floating_point:
        high = 1.0 if inp.high is None else inp.high
        return (torch.rand(inp.shape, generator=gen) * (high - inp.low) + inp.low).to(dtype)
    return _draw_ids(*inp.id_range, inp.shape, gen).to(dtype)


def named_outputs(out, node: Node) -> dict[str, torch.Tensor]:
    """A module's output by name: 'output' for one tensor, the node names of a top graph's
    `output:` list, the keys of its mapping."""
    if isinstance(out, torch.Tensor):
        return {"output": out}
    if isinstance(out, dict):
        return dict(out)
    names = node.output if isinstance(getattr(node, "output", None), list) else [f"output{i}" for i in range(len(out))]
    return dict(zip(names, out, strict=True))


def _draw_ids(low: int, high: int, shape: list[int], gen: torch.Generator) -> torch.Tensor:
    """Integers uniform in [low, high), exactly: torch.randint takes bounds that fit in int64,
    and an int64 input's `high` may be 2**63 (ids up to 2**63-1)."""
    top = 2**63 - 1
    if high <= top:
        return torch.randint(low, high, shape, generator=gen)
    if low > -(2**63):  # [low, 2**63) is [low - 1, 2**63 - 1) moved up by one
        return torch.randint(low - 1, top, shape, generator=gen) + 1
    upper = torch.randint(-(2**31), 2**31, shape, generator=gen)  # the whole int64 range: two 32-bit halves
    return upper * 2**32 + torch.randint(0, 2**32, shape, generator=gen)


def _check_input_dtype(spec: Spec, float_type: torch.dtype) -> None:
    """A declared float input of another type than the model's would be cast silently."""
    for name, one in spec.head.inputs.items():
        is_float = one.dtype.startswith("float") or one.dtype == "bfloat16"
        if is_float and one.dtype != "float32" and devices.DTYPES[one.dtype] != float_type:
            raise BuildError(
                f"input.dtype {one.dtype} is not the model's dtype {devices.dtype_name(float_type)}: a float input is "
                f"cast to the model's dtype (drop input.dtype, or set dtype: {one.dtype})",
                spec.loc(spec.head.input_path(name) + ("dtype",)),
            )


def _check_input_fits(spec: Spec, device: torch.device) -> None:
    """Sample inputs too large for the memory are refused before they are drawn (a float copy on
    the CPU is drawn first: twice their size there)."""
    sizes = {name: math.prod(one.shape) * max(devices.DTYPES[one.dtype].itemsize, 4) * 2
             for name, one in spec.head.inputs.items()}  # fmt: skip
    size = sum(sizes.values())
    if size < 64 << 20:
        return  # small: not worth reading the free memory
    free = memory.available(device)
    if free is not None and size > free:
        name = max(sizes, key=sizes.get)
        shown = f"the sample input {list(spec.head.inputs[name].shape)}"
        if spec.head.named_inputs:
            shown = f"the sample inputs (the largest, '{name}', {list(spec.head.inputs[name].shape)})"
        raise BuildError(
            f"{shown} need{'s' if not spec.head.named_inputs else ''} {size:,} bytes to draw, {free:,} are available "
            f"on {device}", spec.loc(spec.head.input_path(name) + ("shape",)),
        )  # fmt: skip


def build_spec(
    spec: Spec,
    device: str | None = None,
    seed: int | None = None,
    dtype: str | None = None,
    registry: Registry = REGISTRY,
    memory_check: bool = True,
    forward_check: bool = False,
) -> Built:
    """With `memory_check`, the weights must fit in the device's free memory (counted before
    they are allocated); with `forward_check` too, the weights and the activations of one
    forward pass of the sample input together (netcfg/building/memplan.py): refused before the
    forward pass, and before any weight is allocated past LOOK_AHEAD_BYTES."""
    where = Loc(f"--device {device}") if device else spec.loc(("device",))
    target, note = devices.resolve(device or spec.head.device, where)
    seed = spec.head.seed if seed is None else seed
    float_type = devices.DTYPES[dtype or spec.head.dtype]
    _check_input_dtype(spec, float_type)
    budget = memory.available(target) if memory_check and target.type != "meta" else None
    builder = Builder(spec, registry, target, budget, float_type if forward_check else None)
    groups = [list(g) for g in spec.head.ties]
    tie_locs = [[spec.loc(("ties", i, j)) for j in range(len(g))] for i, g in enumerate(groups)]
    rule_locs = [spec.loc(("init", i)) for i in range(len(spec.head.init))]
    # Constructing in module order under the seed draws the same default initialization
    # as hand-written PyTorch constructing the same layers after torch.manual_seed(seed).
    with _seeded(seed, target), _no_gc():
        try:
            model = builder.build_model()
        except BuildError as exc:
            exc.partial = builder  # what was built before the failure, for reports
            raise
        if builder.forward_dtype is not None and budget is not None and not builder.forward_checked:
            weights = builder.allocated // memory.BYTES_PER_ELEMENT * float_type.itemsize  # once cast
            builder.check_forward(builder.visits, weights)  # before the init rules spend time on them
        if groups:
            ties.check(model, groups, tie_locs)
            ties.tie(model, groups)
        param_groups = init.param_groups(model)
        rules = list(spec.head.init)
        types = types_of(builder.visits)
        if target.type == "meta":
            chosen = init.assign(model, rules, types, param_groups)
            _check_rules(model, spec, chosen, rule_locs)
        else:
            chosen = init.apply_rules(model, rules, types, rule_locs, param_groups)
    if float_type != torch.float32:
        model = model.to(float_type)
    warnings = init.unused_rule_warnings(rules, types, chosen, rule_locs, param_groups)
    return Built(model, spec, target, note, float_type, seed, builder.visits, chosen, warnings, {}, builder.outputs)


def _check_rules(model: nn.Module, spec: Spec, chosen: dict[str, int], locs: list[Loc]) -> None:
    """On meta, check that each rule fits the parameters it selects (no values drawn)."""
    params = dict(model.named_parameters())
    problems = []
    for name, index in chosen.items():
        kind = spec.head.init[index].init.kind
        if kind in init._NEEDS_MATRIX and params[name].dim() < 2:
            problems.append(Diagnostic(locs[index], (
                f"cannot initialize '{name}': {kind} needs at least 2 dimensions, "
                f"the tensor has shape {list(params[name].shape)}"
            )))  # fmt: skip
    if problems:
        raise BuildError(problems)


@contextlib.contextmanager
def _no_gc():
    """Building creates thousands of long-lived objects; the collector's passes over them
    during construction find nothing to free and cost a tenth of a large build."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _seeded:
    """Fork the RNG of the CPU (and the target GPU), seed it, restore it afterwards."""

    def __init__(self, seed: int, device: torch.device):
        cuda = [device.index or 0] if device.type == "cuda" else []
        self.fork = torch.random.fork_rng(devices=cuda)
        self.seed, self.cuda = seed, cuda

    def __enter__(self) -> None:
        self.fork.__enter__()
        torch.default_generator.manual_seed(self.seed)
        for index in self.cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(self.seed)

    def __exit__(self, *exc) -> None:
        self.fork.__exit__(*exc)
