"""Template expansion: blocks, repeat, `if` and ${...} values, before validation.

Works on plain data and keeps, for every value it produces, the location of the
source value it came from, so errors inside a block template point into the
template. ``repeat`` becomes a ``sequential`` of independent copies (the body's
``${index}`` seeing 0..N-1); ``block`` becomes the template body with its arguments
bound; a node whose ``if`` is false disappears.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from netcfg.catalogue import composite
from netcfg.catalogue.base import Node
from netcfg.catalogue.registry import Registry
from netcfg.errors import Diagnostic, Loc
from netcfg.spec.budget import EXPANSION_COUNTED, MAX_DEPTH, Budget
from netcfg.spec.estimate import Estimator, Size
from netcfg.spec.expr import ExprError, bind_later, has_expr, names, substitute
from netcfg.spec.validate import FAILED, pydantic_problems
from netcfg.spec.yaml_source import Document, Path

MAX_EXPANDED_NODES = 100_000
_DROP = object()
"""Stands for a node or value whose expansion already reported a problem."""
_SPLICE = object()
"""The key marking an expanded sequential whose layers go in its place (its value: where the
`splice` is); never a string, so no spec key can be taken for it."""


class Scope(dict):
    """The names an expression can read, and for those a `--set` flag gave (directly or
    through a block argument computed from one), the flag: `via`."""

    def __init__(self, values: dict, via: dict[str, str] | None = None):
        super().__init__(values)
        self.via = via or {}

    def child(self, values: dict, via: dict[str, str] | None = None) -> Scope:
        kept = {k: v for k, v in self.via.items() if k not in values}
        return Scope({**self, **values}, {**kept, **(via or {})})


class Expander:
    depth = 0
    """Module nodes and block calls being expanded, one inside the other (see `node`)."""

    def __init__(
        self, doc: Document, registry: Registry, blocks: dict, variables: dict, flags=None, budget: Budget | None = None
    ):
        self.doc = doc
        self.registry = registry
        self.blocks = blocks
        self.variables = variables
        self.flags: dict[str, str] = flags or {}
        """Var name -> the `--set` flag that gave its value."""
        self.vias: dict[Path, str] = {}
        """Expanded path -> the flags its value was computed from."""
        self.vias_below: dict[Path, set[str]] = {}
        """Expanded path -> the flags of the values at or below it (an index of `vias`)."""
        self.locs: dict[Path, Loc] = {}
        self.key_locs: dict[Path, Loc] = {}
        self.problems: list[Diagnostic] = []
        self.dropped: dict[Path, Loc] = {}
        """Graph nodes removed by a false `if`, by expanded path: where their `if` is."""
        self.used_blocks: set[str] = set()
        self.units: dict[Path, list[str]] = {}
        """Each repeat copy ('repeat') and template instance ('block', and the template's name), by
        expanded path: the model's natural blocks, the default units of --strategy fsdp."""
        self.count = 0
        self.budget = budget or Budget()
        """The values and text the expansion may produce: estimated from the text before a model
        or a repeat is expanded, and counted exactly as each value is produced."""
        self.refused = False
        self.estimator = Estimator(blocks, variables, Size(MAX_EXPANDED_NODES, *self.budget.limits))
        self.splices = 0
        """Nodes marked `splice: true` in the root being expanded (0: nothing to flatten)."""
        self.reported_cycles: set[str] = set()
        """Templates whose argument defaults read each other in a cycle (said once each)."""
        self.broken = any(v is FAILED for v in variables.values())
        """A var failed (reported): expressions that read it are left quiet."""

    # -- bookkeeping

    def mark(self, dst: Path, src: Path) -> None:
        self.locs[dst] = self.doc.loc(src)
        if src in self.doc.key_locs:
            self.key_locs[dst] = self.doc.key_locs[src]

    def fail(self, src: Path, message: str, key: bool = False, via: str = "") -> None:
        loc = self.doc.key_loc(src) if key else self.doc.loc(src)
        self.problems.append(Diagnostic(dataclasses.replace(loc, via=via) if via else loc, message))

    def spend(self, values: int, text: int, src: Path) -> None:
        self.budget.spend(values, text, self.doc.loc, src)

    def value(self, raw: Any, src: Path, scope: dict, dst: Path | None = None, later: bool = False) -> Any:
        """Substitute ${...} in plain (non-module) data; `dst`: where the result goes. `later`: in a
        layer's own arguments, where an expression reading the incoming shape is left to the builder."""
        if isinstance(raw, dict):
            self.spend(1 + len(raw), _key_text(raw), src)
            return {k: self.value(v, src + (k,), scope, _sub(dst, k), later) for k, v in raw.items()}
        if isinstance(raw, list):
            self.spend(1, 0, src)
            return [self.value(v, src + (i,), scope, _sub(dst, i), later) for i, v in enumerate(raw)]
        if has_expr(raw):
            if self.broken and any(scope.get(n) is FAILED for n in names(raw)):
                return FAILED  # it reads a var whose own error was reported
            via = _via(raw, scope)
            if via and dst is not None:
                self.vias[dst] = via
                for end in range(len(dst) + 1):
                    self.vias_below.setdefault(dst[:end], set()).add(via)
            try:
                result = (later and bind_later(raw, scope)) or substitute(raw, scope)
            except ExprError as exc:
                self.fail(src, str(exc), via=via)
                return FAILED
            self.budget.spend_on(result, self.doc.loc, src)  # a block argument can be a list
            return result
        self.spend(1, len(raw) if isinstance(raw, str) else 0, src)
        return raw

    def vias_under(self, dst: Path) -> str:
        """The flags any value at or below `dst` was computed from."""
        found = self.vias_below.get(dst, ())
        return ", ".join(sorted(found))

    def copy_locs(self, raw: Any, src: Path, dst: Path) -> None:
        self.mark(dst, src)
        if isinstance(raw, dict):
            for k, v in raw.items():
                self.copy_locs(v, src + (k,), dst + (k,))
        elif isinstance(raw, list):
            for i, v in enumerate(raw):
                self.copy_locs(v, src + (i,), dst + (i,))

    # -- module nodes

    def node(self, raw: Any, src: Path, dst: Path, scope: dict, stack: tuple = ()) -> Any:
        """`raw` expanded, at most MAX_DEPTH nodes deep, block calls counted: a file cannot nest
        deeper than that, but blocks calling blocks can, and the expansion, the validation and the
        build all recurse (past about 130 levels: RecursionError). Deeper, one located error."""
        if self.depth >= MAX_DEPTH:
            calls = f" ({len(stack)} block calls deep, '{stack[0]}' to '{stack[-1]}')" if stack else ""
            return self.refuse(src, f"nesting deeper than {MAX_DEPTH} levels once blocks are expanded{calls}")
        self.depth += 1
        try:
            return self.expand_node(raw, src, dst, scope, stack)
        finally:
            self.depth -= 1

    def expand_node(self, raw: Any, src: Path, dst: Path, scope: dict, stack: tuple) -> Any:
        self.count += 1
        if self.count > MAX_EXPANDED_NODES:
            if self.count == MAX_EXPANDED_NODES + 1:
                self.fail(src, f"the model expands to more than {MAX_EXPANDED_NODES:,} module nodes")
            return FAILED
        if not isinstance(raw, dict):
            self.copy_locs(raw, src, dst)
            return self.value(raw, src, scope, dst)
        if "if" in raw:
            keep = self.value(raw["if"], src + ("if",), scope, dst + ("if",))
            if keep is FAILED:
                return FAILED  # its expression's error was reported
            if not isinstance(keep, bool):
                via = self.vias.get(dst + ("if",), "")
                self.fail(src + ("if",), f"'if' must be true or false, got {keep!r}", via=via)
            elif not keep:
                return _DROP
            raw = {k: v for k, v in raw.items() if k != "if"}
        if "splice" in raw:
            return self.splice(raw, src, dst, scope, stack)
        kind = self.value(raw.get("type"), src + ("type",), scope, dst + ("type",))
        if kind == "block":
            return self.block(raw, src, dst, scope, stack)
        if kind == "repeat":
            return self.repeat(raw, src, dst, scope, stack)
        return self.plain(raw, kind, src, dst, scope, stack)

    def splice(self, raw: dict, src: Path, dst: Path, scope: dict, stack: tuple) -> Any:
        """A node with `splice: true`: expanded as usual to a sequential, marked so that its layers
        take its place in the enclosing list (done once the root is expanded: `flatten`)."""
        where = src + ("splice",)
        splice = self.value(raw["splice"], where, scope, dst + ("splice",))
        if splice is not FAILED and not isinstance(splice, bool):
            via = self.vias.get(dst + ("splice",), "")
            self.fail(where, f"'splice' must be true or false, got {splice!r}", via=via)
        for key in ("name", "inputs"):
            if splice is True and key in raw:
                self.fail(src + (key,), f"a spliced node has no module of its own: its layers take its place, "
                                        f"so it takes no '{key}'", key=True)  # fmt: skip
        result = self.node({k: v for k, v in raw.items() if k != "splice"}, src, dst, scope, stack)
        if splice is not True or not isinstance(result, dict):
            return result
        if result.get("type") != "sequential":
            what = result.get("type") if isinstance(result.get("type"), str) else "no sequential"
            self.fail(where, (
                f"'splice: true' puts the layers of a sequential in its place; this node expands to {what!r} "
                "(splice a sequential, a repeat in sequence, or a block whose body is one)"
            ))  # fmt: skip
            return FAILED
        if result.get("extra_inputs") == "every_layer":
            self.fail(where, "a sequential whose every layer reads its extra inputs (extra_inputs: every_layer) "
                             "cannot be spliced: the enclosing list gives them to its first layer only")  # fmt: skip
            return FAILED
        self.splices += 1
        result[_SPLICE] = where
        return result

    def check_unused_blocks(self) -> None:
        """A template no node instantiates is never expanded: check at least its literal layer types."""
        for name, template in self.blocks.items():
            if template is not None and name not in self.used_blocks:
                self._literal_types(template.body, ("blocks", name, "body"))

    def _literal_types(self, raw: Any, src: Path) -> None:
        if isinstance(raw, list):
            for i, item in enumerate(raw):
                self._literal_types(item, src + (i,))
            return
        if not isinstance(raw, dict):
            return
        kind = raw.get("type")
        if isinstance(kind, str) and not has_expr(kind) and self.registry.get(kind) is None:
            names = [n for n, e in self.registry.entries.items() if e.kind != "expansion"] + ["block", "repeat"]
            self.fail(src + ("type",), f"unknown layer type '{kind}'{_suggest(kind, names)} (in unused block)")
        for key, value in raw.items():
            if isinstance(value, (dict, list)):
                self._literal_types(value, src + (key,))

    def root(self, raw: Any, path: Path, scope: dict) -> Any:
        """The model or a shared module: expanded like any node, but it cannot be removed."""
        self.estimator.copies = None
        size = self.estimator.size(raw, path, scope)
        copies = self.estimator.copies
        if copies is not None and self.over(copies.body * copies.times):
            return self.refuse(
                copies.src, self.copies_message(copies.times, copies.body, self.over(copies.body * copies.times))
            )
        over = self.over(size)
        if over:
            what = "the model" if path == ("model",) else f"shared module '{path[-1]}'"
            return self.refuse(path, f"{what} would expand to about {self.about(size, over)}: {self.limit(over)}")
        result = self.node(raw, path, path, scope)
        if result is _DROP:
            what = "the model" if path == ("model",) else f"shared module '{path[-1]}'"
            self.fail(path + ("if",), f"{what} cannot be removed by its `if`")
            return FAILED
        if self.splices:
            self.splices = 0
            result = Splicer(self).root(result, path)
        return result

    def plain(self, raw: dict, kind: Any, src: Path, dst: Path, scope: dict, stack: tuple) -> dict:
        self.mark(dst, src)
        self.spend(1 + len(raw), _key_text(raw), src)
        children = composite.CHILD_FIELDS.get(kind, {}) if isinstance(kind, str) else {}
        entry = self.registry.get(kind) if isinstance(kind, str) else None
        leaf = entry is not None and entry.kind in ("layer", "merge")
        out: dict = {}
        for key, val in raw.items():
            shape = children.get(key)
            if shape is None or val is None:
                self.copy_locs(val, src + (key,), dst + (key,))
                out[key] = self.value(val, src + (key,), scope, dst + (key,), later=leaf and key != "type")
            else:
                out[key] = self.children(shape, val, src + (key,), dst + (key,), scope, stack)
        return out

    def children(self, shape: str, val: Any, src: Path, dst: Path, scope: dict, stack: tuple) -> Any:
        self.mark(dst, src)
        if shape == "one":
            result = self.node(val, src, dst, scope, stack)
            return {"type": "identity"} if result is _DROP else result
        if shape == "list" and isinstance(val, list):
            kept = [(i, v) for i, v in enumerate(val)]
            out = []
            for i, item in kept:
                result = self.node(item, src + (i,), dst + (len(out),), scope, stack)
                if result is not _DROP:
                    out.append(result)
            return out
        if shape == "map" and isinstance(val, dict):
            out_map = {}
            for name, item in val.items():
                result = self.node(item, src + (name,), dst + (name,), scope, stack)
                if result is not _DROP:
                    out_map[name] = result
                else:
                    self.dropped[dst + (name,)] = self.doc.loc(src + (name, "if"))
            return out_map
        self.copy_locs(val, src, dst)
        return val  # wrong shape: validation reports it

    def repeat(self, raw: dict, src: Path, dst: Path, scope: dict, stack: tuple) -> Any:
        fields = self.value({k: v for k, v in raw.items() if k != "body"}, src, scope, dst)
        args = self.validated(composite.Repeat, {**fields, "body": None}, src, dst)
        if args is None:
            return FAILED
        if args.merge is not None and args.extra_inputs == "every_layer":
            self.fail(src + ("extra_inputs",), "copies side by side (merge) all read every input: "
                                               "'extra_inputs: every_layer' is for copies in sequence")  # fmt: skip
            return FAILED
        body = self.estimator.size(raw.get("body"), src + ("body",), scope)
        over = self.over(body * args.times)
        if over:  # found before expanding anything
            return self.refuse(src + ("times",), self.copies_message(args.times, body, over))
        self.mark(dst, src)
        key = "layers" if args.merge is None else "branches"
        layers = []
        for i in range(args.times):
            inner = _scope(scope).child({args.index: i})
            result = self.node(raw.get("body"), src + ("body",), dst + (key, len(layers)), inner, stack)
            if result is not _DROP:
                self.units.setdefault(dst + (key, len(layers)), []).append("repeat")
                layers.append(result)
        self.mark(dst + (key,), src + ("body",))
        if args.merge is None:
            chain = {"extra_inputs": args.extra_inputs} if "extra_inputs" in fields else {}
            return _carry(fields, {"type": "sequential", "layers": layers, **chain})
        return _carry(fields, {"type": "parallel", "branches": layers, "merge": args.merge, "dim": args.dim})

    def block(self, raw: dict, src: Path, dst: Path, scope: dict, stack: tuple) -> Any:
        at = dst + ("<call>", len(stack))  # nested calls expand at the same dst: keep their flags apart
        call = self.validated(composite.Block, self.value(raw, src, scope, at), src, at)
        if call is None:
            return FAILED
        if call.block in self.blocks and self.blocks[call.block] is None:
            return FAILED  # an invalid template, already reported
        template = self.blocks.get(call.block)
        if template is None:
            hint = _suggest(call.block, list(self.blocks))
            self.fail(src + ("block",), f"unknown block '{call.block}'{hint}", via=self.vias_under(at + ("block",)))
            return FAILED
        if call.block in stack:
            chain = " -> ".join(stack + (call.block,))
            self.fail(src + ("block",), f"block '{call.block}' instantiates itself ({chain})")
            return FAILED
        self.used_blocks.add(call.block)
        body_src = ("blocks", call.block, "body")
        # A value the template computes from an argument this call gives names the call too: with
        # several instances, the one whose argument is wrong.
        site = f"block '{call.block}' at line {self.doc.loc(src).line}"
        raw_args = raw.get("args") if isinstance(raw.get("args"), dict) else {}
        via = {name: ", ".join([site, *filter(None, [_via_deep(raw_args.get(name), scope)])]) for name in call.args}
        bound = self.bind(call, template, src, via)
        if bound is None:
            return FAILED
        inner = Scope(self.variables, self.flags).child(bound, via)
        size = self.estimator.size(template.body, body_src, inner)  # its arguments known: before expanding it
        over = self.over(size)
        if over:
            about = self.about(size, over)
            return self.refuse(
                src + ("block",), f"block '{call.block}' would expand to about {about}: {self.limit(over)}"
            )
        result = self.node(template.body, body_src, dst, inner, stack + (call.block,))
        if not isinstance(result, dict):
            return result
        self.units.setdefault(dst, []).extend(["block", call.block])
        for key in ("name", "inputs", "trainable"):
            if key in raw:
                self.copy_locs(raw[key], src + (key,), dst + (key,))
        return _carry(self.value(raw, src, scope, dst), result)

    def bind(self, call: composite.Block, template: Any, src: Path, via: dict[str, str]) -> dict | None:
        """The call's arguments with the template's defaults for the others. A default may be an
        expression over the vars and the other arguments (`width: ${planes * 4}`), computed per use
        after the arguments it reads; one computed from an argument this call gives names the call
        (added to `via`)."""
        ok = True
        for name in call.args:
            if name not in template.args:
                hint = _suggest(name, list(template.args))
                self.fail(src + ("args", name), f"block '{call.block}' has no argument '{name}'{hint}", key=True)
                ok = False
        for name, default in template.args.items():
            if default is None and call.args.get(name) is None:
                self.fail(src, f"block '{call.block}' needs argument '{name}'")
                ok = False
        defaults = {n: d for n, d in template.args.items() if n not in call.args}
        order = self.default_order(call.block, defaults)
        if not ok or order is None:
            return None
        bound = dict(call.args)
        scope = Scope(self.variables, self.flags).child(bound, via)
        for name in order:
            raw = defaults[name]
            read = names(raw) - {name} if has_expr(raw) else frozenset()  # its own name: the var of that name
            if any(bound.get(n) is FAILED for n in read):
                bound[name] = FAILED  # reported at the default it reads
                continue
            bound[name] = self.value(raw, ("blocks", call.block, "args", name), scope)
            via_default = _via(raw, scope) if read else ""
            scope = scope.child({name: bound[name]}, {name: via_default} if via_default else None)
            if name in scope.via:
                via[name] = scope.via[name]
        return None if any(bound[n] is FAILED for n in order) else bound  # a failed given argument: its uses stay quiet

    def default_order(self, block: str, defaults: dict) -> list[str] | None:
        """The defaults in an order where each comes after the other defaults it reads (None: they
        read each other in a cycle; said once per template, at the cycle's first argument)."""
        reads = {n: (names(d) & defaults.keys()) - {n} if has_expr(d) else set() for n, d in defaults.items()}
        order: list[str] = []
        state: dict[str, int] = {}  # 1: being placed, 2: placed
        for start in defaults:
            cycle = _place_after_reads(start, reads, state, order)
            if cycle:
                if block not in self.reported_cycles:
                    self.reported_cycles.add(block)
                    self.fail(("blocks", block, "args", cycle[0]), (
                        f"arguments of block '{block}' read each other in a cycle: {_chain(cycle, 'arguments')} "
                        "(give one of them in the call's `args`)"
                    ))  # fmt: skip
                return None
        return order

    def refuse(self, src: Path, message: str) -> Any:
        """A node that would pass a budget is not expanded: said for the first one only (the
        others past the same budget would repeat it)."""
        if not self.refused:
            self.fail(src, message)
            self.refused = True
        return FAILED

    def over(self, size: Size) -> str:
        """Which budget `size` would pass from here ('' when none): nodes, values or text."""
        if self.count + size.nodes > MAX_EXPANDED_NODES:
            return "nodes"
        if size.values > self.budget.values_left:
            return "values"
        return "text" if size.text > self.budget.text_left else ""

    def copies_message(self, times: int, body: Size, over: str) -> str:
        if over == "nodes":  # (the model's nodes: module nodes, not values)
            return (f"{times:,} copies of a body of about {body.nodes:,} module nodes: "
                    f"the model would expand to more than {MAX_EXPANDED_NODES:,}")  # fmt: skip
        return f"{times:,} copies of a body of about {self.about(body, over)}: {self.limit(over)}"

    @staticmethod
    def about(size: Size, over: str) -> str:
        if over == "nodes":
            return f"{size.nodes:,} module nodes"
        return f"{size.values:,} values" if over == "values" else f"{_mib(size.text)} of text"

    def limit(self, over: str) -> str:
        if over == "nodes":
            return f"the model would expand to more than {MAX_EXPANDED_NODES:,} module nodes"
        values, text = self.budget.limits
        if over == "values":
            return f"the spec would expand to more than {values:,} values ({EXPANSION_COUNTED})"
        return f"the spec would expand to more than {text // 2**20} MiB of text ({EXPANSION_COUNTED})"

    def validated(self, model: type[Node], data: dict, src: Path, dst: Path) -> Any:
        def loc(path: Path) -> Loc:
            via = self.vias_under(dst + path)
            found = self.doc.loc(src + path)
            return dataclasses.replace(found, via=via) if via else found

        problems, result = pydantic_problems(model, data, loc)
        self.problems.extend(problems)
        return result


class Splicer:
    """Puts the layers of every sequential marked `splice: true` in its place in the enclosing
    sequential's layers (a repeat in sequence is one), recursively, and moves what the expander
    recorded by path (locations, flags, removed graph nodes) to the new paths; in one pass."""

    def __init__(self, expander: Expander):
        self.expander = expander
        self.moves: dict[Path, Path | None] = {}
        """Old path -> new path (None: a spliced sequential's own keys, gone)."""

    def root(self, data: Any, path: Path) -> Any:
        self.walk(data, path, path)
        ex = self.expander
        ex.locs, ex.key_locs = self.moved(ex.locs), self.moved(ex.key_locs)
        ex.vias, ex.dropped = self.moved(ex.vias), self.moved(ex.dropped)
        return data

    def walk(self, node: Any, old: Path, new: Path) -> None:
        """Flatten below `node`, which moves from path `old` to `new` (iterative: any depth)."""
        stack = [(node, old, new)]
        while stack:
            node, old, new = stack.pop()
            if old != new:
                self.moves[old] = new
            if isinstance(node, list):
                stack.extend((v, old + (i,), new + (i,)) for i, v in enumerate(node))
                continue
            if not isinstance(node, dict):
                continue
            if _SPLICE in node:  # (the marks of the layers of a sequential are taken off before)
                self.misplaced(node)
            layers = node.get("layers") if node.get("type") == "sequential" else None
            if isinstance(layers, list):
                flat = [item for i, layer in enumerate(layers) for item in self.items(layer, old + ("layers", i))]
                node["layers"] = [layer for _, layer in flat]
                stack.extend((layer, at, new + ("layers", j)) for j, (at, layer) in enumerate(flat))
            stack.extend((v, old + (k,), new + (k,)) for k, v in node.items() if not (k == "layers" and layers))

    def items(self, layer: Any, old: Path) -> list[tuple[Path, Any]]:
        """The layers `layer` puts in a list: its own when it is spliced (theirs when they are), else itself."""
        out: list[tuple[Path, Any]] = []
        stack = [(layer, old)]
        while stack:
            layer, old = stack.pop()
            if not (isinstance(layer, dict) and _SPLICE in layer):
                out.append((old, layer))
                continue
            del layer[_SPLICE]
            self.moves[old] = None
            frozen = layer.get("trainable") is False
            inner = layer.get("layers") if isinstance(layer.get("layers"), list) else []
            for j in range(len(inner) - 1, -1, -1):
                if frozen and isinstance(inner[j], dict):
                    inner[j]["trainable"] = False  # as the sequential's trainable: false would have frozen it
                stack.append((inner[j], old + ("layers", j)))
        return out

    def misplaced(self, node: dict) -> None:
        where = node.pop(_SPLICE)
        self.expander.fail(where, "'splice: true' only in a sequential's `layers` or a repeat's body (copies in "
                                  "sequence): its layers go in its place in that list")  # fmt: skip

    def moved(self, by_path: dict) -> dict:
        if not self.moves:
            return by_path
        out: dict = {}
        for path, value in by_path.items():
            for end in range(len(path), -1, -1):
                if path[:end] in self.moves:
                    target = self.moves[path[:end]]
                    if target is not None:
                        out[target + path[end:]] = value
                    break
            else:
                out[path] = value
        return out


def expand_vars(
    doc: Document, registry: Registry, variables: dict, flags: dict[str, str], budget: Budget
) -> tuple[dict, dict[str, str], list[Diagnostic]]:
    """The vars computed in order, each `${...}` over the vars above it; a var computed from one
    a `--set` flag gave names that flag too (returned with the flags). A var that reads itself, a
    later var or a var that failed is FAILED (the first two reported here, naming the vars)."""
    expander = Expander(doc, registry, {}, {}, flags, budget)
    values: dict = {}
    flags = dict(flags)
    position = {name: i for i, name in enumerate(variables)}
    in_cycles: set[str] = set()
    for name, raw in variables.items():
        read = names(raw) if has_expr(raw) else frozenset()
        later = sorted((n for n in read if n in position and position[n] >= position[name]), key=position.get)
        if later and name not in in_cycles:
            message, cycle = _order_problem(name, later[0], variables, position)
            in_cycles.update(cycle)  # a cycle is said once, at its first var
            expander.fail(("vars", name), message)
        if later or any(values.get(n) is FAILED for n in read):
            values[name] = FAILED  # reported: here, or at the var it reads
            continue
        values[name] = expander.value(raw, ("vars", name), Scope(values, flags), ("vars", name))
        via = sorted({flags[n] for n in read if n in flags} | ({flags[name]} if name in flags else set()))
        if via:
            flags[name] = ", ".join(via)
    return values, flags, expander.problems


def _order_problem(name: str, later: str, variables: dict, position: dict) -> tuple[str, tuple]:
    """Why var `name` cannot read var `later` (itself or one below it): a cycle, named, or the
    order; and the vars of the cycle (none: no cycle)."""
    if later == name:
        return f"var '{name}' reads itself", (name,)
    cycle = _cycle(later, name, variables, position, (name,))
    if cycle:
        return (f"vars {_chain(cycle)} read each other in a cycle: each var is computed from the vars "
                "above it"), cycle  # fmt: skip
    return (f"var '{name}' reads '{later}', which comes after it: each var is computed from the vars above it "
            f"(move '{later}' above '{name}')"), ()  # fmt: skip


def _cycle(start: str, goal: str, variables: dict, position: dict, chain: tuple) -> tuple | None:
    """A chain of var references from `start` back to `goal`, after `chain` (depth-first, each var
    visited once, linear in the vars: the way back is kept as each var's parent)."""
    parent: dict[str, str | None] = {start: None}
    stack = [start]
    while stack:
        here = stack.pop()
        if here == goal:
            path = [here]
            while parent[path[-1]] is not None:
                path.append(parent[path[-1]])
            return chain + tuple(reversed(path))
        raw = variables.get(here)
        read = names(raw) if has_expr(raw) else frozenset()
        for name in sorted(read, key=position.get, reverse=True):
            if name in position and name not in parent:
                parent[name] = here
                stack.append(name)
    return None


def _chain(names: tuple, what: str = "vars") -> str:
    """a -> b -> a, its middle left out when long."""
    if len(names) <= 10:
        return " -> ".join(names)
    return f"{' -> '.join(names[:5])} -> ... -> {' -> '.join(names[-3:])} ({len(names) - 1} {what})"


def _place_after_reads(start: str, reads: dict, state: dict, order: list) -> tuple | None:
    """Depth-first (iterative: a template may have many arguments): append `start` to `order`
    after the names it reads, and those after theirs; a cycle met on the way."""
    if state.get(start) == 2:
        return None
    state[start] = 1
    chain = [start]
    pending = [iter(sorted(reads[start]))]
    while pending:
        read = next(pending[-1], None)
        if read is None:  # all it reads are placed
            pending.pop()
            state[chain[-1]] = 2
            order.append(chain.pop())
        elif state.get(read) == 1:
            return tuple(chain[chain.index(read) :]) + (read,)
        elif state.get(read) != 2:
            state[read] = 1
            chain.append(read)
            pending.append(iter(sorted(reads[read])))
    return None


def _mib(chars: int) -> str:
    return f"{chars / 2**20:,.1f} MiB" if chars >= 2**20 else f"{chars:,} characters"


def _key_text(raw: dict) -> int:
    return sum(len(k) for k in raw if isinstance(k, str))


def _sub(path: Path | None, key: Any) -> Path | None:
    return None if path is None else path + (key,)


def _scope(scope: dict) -> Scope:
    return scope if isinstance(scope, Scope) else Scope(scope)


def _via(raw: str, scope: dict) -> str:
    """The flags behind the names an expression reads ('' when none: the usual case)."""
    via = getattr(scope, "via", None)
    if not via:
        return ""
    return ", ".join(sorted({via[n] for n in names(raw) if n in via}))


def _via_deep(raw: Any, scope: dict) -> str:
    """The flags behind every expression in a value (an argument may be a list or mapping)."""
    if isinstance(raw, dict):
        parts = [_via_deep(v, scope) for v in raw.values()]
    elif isinstance(raw, list):
        parts = [_via_deep(v, scope) for v in raw]
    else:
        return _via(raw, scope) if has_expr(raw) else ""
    return ", ".join(sorted({p for p in parts if p}))


def _carry(call_fields: dict, result: dict) -> dict:
    """A block or repeat's own name/inputs/trainable apply to the node it expands to."""
    for key in ("name", "inputs", "trainable"):
        if key in call_fields:
            result[key] = call_fields[key]
    return result


def _suggest(word: str, choices: list[str]) -> str:
    from netcfg.suggest import suggest

    return suggest(word, choices)
