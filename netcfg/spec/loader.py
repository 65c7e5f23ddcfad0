"""From a spec file (plus --set overrides) to a validated, expanded Spec. No torch.

Steps, each collecting every problem before raising one SpecError:
read the file -> safe YAML with locations -> apply overrides -> validate the top level
-> check the format version -> expand blocks/repeat/if/${} -> validate module nodes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any

from netcfg.catalogue.registry import REGISTRY, Registry
from netcfg.errors import Diagnostic, InputError, Loc, SpecError
from netcfg.io.files import open_regular
from netcfg.numbers import index_or_key
from netcfg.spec import model as spec_mod
from netcfg.spec.budget import MAX_DEPTH, MAX_DOCUMENT_VALUES, MAX_FILE_BYTES, MAX_TEXT, Budget
from netcfg.spec.expand import Expander, Scope, expand_vars
from netcfg.spec.validate import NodeValidator, pydantic_problems, suggest, yaml_repr
from netcfg.spec.yaml_source import Document, read_yaml


def read_text(path: str | os.PathLike) -> str:
    """Read a text file, turning every OS problem into a one-line InputError."""
    name = str(path)
    try:
        with open_regular(path, InputError, "spec file") as f:
            if os.fstat(f.fileno()).st_size > MAX_FILE_BYTES:
                raise InputError(f"file larger than {MAX_FILE_BYTES // 2**20} MiB; not a spec", Loc(name))
            return f.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte {exc.start})", Loc(name)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", Loc(name)) from None


def load_spec(
    path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = (), registry: Registry = REGISTRY
) -> spec_mod.Spec:
    """Read, override, expand and validate a spec file."""
    doc = read_yaml(read_text(path), str(path))
    apply_overrides(doc, overrides)
    return resolve(doc, registry)


def load_spec_data(data: Any, file: str, registry: Registry = REGISTRY) -> spec_mod.Spec:
    """Validate an already-parsed spec (for example one embedded in a checkpoint)."""
    _check_size(data, file)
    return resolve(Document(data=data, file=file), registry)


def read_json(text: str, file: str) -> Any:
    """JSON text of a spec (the one a checkpoint embeds), with the limits of a spec file: its size,
    and its number of values counted from its punctuation before it is parsed; a key given twice
    in one object (which JSON would keep silently, the last one winning) is an error naming it.
    Text that is not JSON raises ValueError (RecursionError: nested too deeply to parse)."""
    if len(text) > MAX_FILE_BYTES or len(text.encode()) > MAX_FILE_BYTES:
        raise SpecError(f"the spec is larger than {MAX_FILE_BYTES // 2**20} MiB, the limit of a spec file", Loc(file))
    if _json_values_at_most(text) > MAX_DOCUMENT_VALUES:
        raise SpecError(f"the spec holds more than {MAX_DOCUMENT_VALUES:,} values, the limit of a spec file", Loc(file))
    return _unique_keys(json.loads(text, object_pairs_hook=_Pairs), file)


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_JSON_EMPTY = re.compile(r"\[\s*\]|\{\s*\}")


def _json_values_at_most(text: str) -> int:
    """Every JSON value but the first follows a '[', '{', ',' or ':'. Counted on the text, strings
    left out (only when the quick count, strings included, is past the limit), and empty lists and
    objects, which open a value that is not there."""
    quick = 1 + sum(text.count(c) for c in "[{,:")
    if quick <= MAX_DOCUMENT_VALUES:
        return quick
    bare = _JSON_STRING.sub("", text)
    return 1 + sum(bare.count(c) for c in "[{,:") - len(_JSON_EMPTY.findall(bare))


class _Pairs(list):
    """A JSON object kept as its (key, value) pairs, so a repeated key can be named."""


def _unique_keys(value: Any, file: str) -> Any:
    """The data with every object a dict; iterative (any depth the JSON parser reached)."""
    root: list = [value]
    stack: list[tuple[Any, Any, tuple]] = [(root, 0, ())]  # (container, index or key, path of the value)
    while stack:
        parent, key, path = stack.pop()
        item = parent[key]
        if isinstance(item, _Pairs):
            out: dict = {}
            for name, child in item:
                if name in out:
                    where = ".".join(str(p) for p in path) or "the top level"
                    raise SpecError(f"duplicate key '{name}' in {where} (JSON would keep the last one)", Loc(file))
                out[name] = child
            parent[key] = out
            stack.extend((out, name, path + (name,)) for name in out)
        elif isinstance(item, list):
            stack.extend((item, i, path + (i,)) for i in range(len(item)))
    return root[0]


def _check_size(data: Any, file: str) -> None:
    """The limits a YAML file gets (nesting, number of values, text) for data that came another way."""
    stack, count, text = [(data, 1)], 0, 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH and isinstance(value, (dict, list)):  # as YAML counts: collections, not scalars
            raise SpecError(f"nesting deeper than {MAX_DEPTH} levels", Loc(file))
        if count > MAX_DOCUMENT_VALUES:
            raise SpecError(
                f"the spec holds more than {MAX_DOCUMENT_VALUES:,} values, the limit of a spec file", Loc(file)
            )
        if isinstance(value, dict):
            count += len(value)  # its keys
            text += sum(len(k) for k in value if isinstance(k, str))
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, str):
            text += len(value)
        if text > MAX_TEXT:
            raise SpecError(
                f"the spec holds more than {MAX_TEXT // 2**20} MiB of text, the limit of a spec file", Loc(file)
            )


# ---------------------------------------------------------------- overrides


def apply_overrides(doc: Document, overrides: list[str] | tuple[str, ...]) -> None:
    problems: list[Diagnostic] = []
    for text in overrides:
        try:
            _apply_one(doc, text)
        except SpecError as exc:
            problems.extend(exc.diagnostics)
    if problems:
        raise SpecError(problems)


def _apply_one(doc: Document, text: str) -> None:
    flag = Loc(f"--set {text}")
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SpecError("expected --set path.to.key=value", flag)
    try:
        value = read_yaml(raw, flag.file).data
    except SpecError as exc:
        raise SpecError(f"bad value: {exc.diagnostics[0].message}", flag) from None
    parts = [index_or_key(p) for p in key.strip().split(".")]  # ASCII digits only: '²' and '--1' are keys
    parent = _walk(doc.data, parts[:-1], flag)
    if parts[:-1] == ["vars"] and isinstance(parent, dict) and parts[-1] not in parent:
        # A new var is referenced nowhere: almost surely a typo of an existing one.
        raise SpecError(f"no key '{parts[-1]}' under vars{suggest(str(parts[-1]), list(parent))}", flag)
    _set(parent, parts[-1], value, flag, parts)
    path = tuple(parts)
    for old in [p for p in doc.locs if p[: len(path)] == path]:
        del doc.locs[old]
    _mark_all(doc, value, path, flag)


def _walk(data: Any, parts: list, flag: Loc) -> Any:
    for i, part in enumerate(parts):
        where = ".".join(str(p) for p in parts[:i]) or "the top level"
        if (
            isinstance(data, dict)
            and part in data
            or isinstance(data, list)
            and isinstance(part, int)
            and -len(data) <= part < len(data)
        ):
            data = data[part]
        elif isinstance(data, list):
            raise SpecError(f"'{part}' is not an index of the list at {where} (it has {len(data)} items)", flag)
        elif isinstance(data, dict):
            raise SpecError(f"no key '{part}' under {where}{suggest(str(part), list(data))}", flag)
        else:
            raise SpecError(f"{where} is {yaml_repr(data)}, which has no key '{part}'", flag)
    return data


def _set(parent: Any, last: Any, value: Any, flag: Loc, parts: list) -> None:
    if (
        isinstance(parent, dict)
        or isinstance(parent, list)
        and isinstance(last, int)
        and -len(parent) <= last < len(parent)
    ):
        parent[last] = value
    else:
        where = ".".join(str(p) for p in parts[:-1]) or "the top level"
        raise SpecError(f"cannot set '{last}' under {where}", flag)


def _mark_all(doc: Document, value: Any, path: tuple, flag: Loc) -> None:
    doc.locs[path] = flag
    doc.key_locs[path] = flag
    if isinstance(value, dict):
        for k, v in value.items():
            _mark_all(doc, v, path + (k,), flag)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _mark_all(doc, v, path + (i,), flag)


# ---------------------------------------------------------------- resolution


def resolve(doc: Document, registry: Registry) -> spec_mod.Spec:
    data = doc.data
    if not isinstance(data, dict):
        raise SpecError(f"a spec is a mapping with keys netcfg, input and model; got {yaml_repr(data)}", doc.loc(()))
    _check_version(doc)
    budget = Budget()  # one for the whole spec: top-level values, the model and the shared modules
    raw_vars = data.get("vars") if isinstance(data.get("vars"), dict) else {}
    variables, flags, var_problems = expand_vars(doc, registry, raw_vars, _var_flags(doc, raw_vars), budget)
    subst_problems = _substitute_top(doc, budget, variables, flags)
    problems, head = pydantic_problems(spec_mod.SpecHead, data, lambda p: _loc(doc, p), owner="at the top level")
    problems = var_problems + subst_problems + problems
    blocks, shared_raw = _parts(head, data)
    if head is not None:
        problems += _check_init_layers(doc, head, registry)
    expander = Expander(doc, registry, blocks, variables, flags, budget)
    scope = Scope(variables, flags)
    try:
        model_data = expander.root(data["model"], ("model",), scope) if "model" in data else None
        shared_data = {name: expander.root(raw, ("shared", name), scope) for name, raw in shared_raw.items()}
    except SpecError as exc:  # a budget passed: that, and what was found before it
        raise SpecError(sorted(problems + expander.problems + exc.diagnostics, key=_place)) from None
    expander.check_unused_blocks()
    problems += expander.problems
    locs = _with_vias(expander.locs, expander.vias)
    key_locs = expander.key_locs
    for path, loc in doc.locs.items():
        if path and path[0] not in ("model", "shared", "blocks"):
            locs[path] = loc

    def loc_of(p: tuple) -> Loc:
        return _nearest(locs, p, doc.file)

    def key_loc_of(p: tuple) -> Loc:
        return key_locs.get(p) or loc_of(p)

    if head is not None and head.named_inputs and isinstance(model_data, dict):
        problems += _name_top_inputs(model_data, list(head.inputs), loc_of)
    validator = NodeValidator(registry, loc_of, key_loc_of, list(shared_data))
    model = validator.node(model_data, ("model",)) if "model" in data else None
    shared = {name: validator.node(raw, ("shared", name)) for name, raw in shared_data.items()}
    problems += validator.problems
    if problems or head is None:
        raise SpecError(sorted(problems, key=_place))
    resolved = head.model_dump(mode="json", exclude={"blocks", "model", "shared"}, exclude_defaults=True)
    resolved.update(netcfg=head.netcfg, input=_dumped_input(head), model=model_data)
    if shared_data:
        resolved["shared"] = shared_data
    spec = spec_mod.Spec(head=head, model=model, shared=shared, data=resolved, file=doc.file, locs=locs)
    spec.dropped = expander.dropped
    spec.units = {path: kinds for path, kinds in expander.units.items() if path[0] == "model"}
    return spec


def _name_top_inputs(model: dict, names: list[str], loc_of) -> list[Diagnostic]:
    """The model's top graph reads the spec's named inputs by their names."""
    if model.get("type") != "graph":
        return []
    if "input_names" in model and model["input_names"] != names:  # equal: a spec netcfg wrote back
        message = "the model's inputs are named by the top-level `input:`; remove input_names here"
        return [Diagnostic(loc_of(("model", "input_names")), message)]
    model["input_names"] = names
    return []


def _dumped_input(head: spec_mod.SpecHead) -> dict:
    if not head.named_inputs:
        return head.input.model_dump(mode="json")
    return {name: one.model_dump(mode="json") for name, one in head.inputs.items()}


def _place(d: Diagnostic) -> tuple:
    """Order problems as they appear: files by name, then line and column (flags last)."""
    loc = d.loc or Loc("")
    if loc.line <= 0:
        return (1, "", 0, 0)  # flags after the file, in command-line order (the sort is stable)
    return (0, loc.file, loc.line, loc.col)


def _substitute_top(doc: Document, budget: Budget, variables: dict, flags: dict[str, str]) -> list[Diagnostic]:
    """${...} in top-level values (init rules, input, ...) see the vars; module nodes and
    block bodies are substituted during expansion, where block arguments are known too."""
    expander = Expander(doc, REGISTRY, {}, variables, flags, budget)
    for key in list(doc.data):
        if key not in ("model", "shared", "blocks", "vars"):
            doc.data[key] = expander.value(doc.data[key], (key,), Scope(variables, flags), (key,))
    doc.locs.update(_with_vias(doc.locs, expander.vias))
    return expander.problems


def _var_flags(doc: Document, variables: dict) -> dict[str, str]:
    """Var name -> the `--set` flag that gave it (flags are located at no line)."""
    found = {name: doc.loc(("vars", name)) for name in variables if isinstance(name, str)}
    return {name: loc.file for name, loc in found.items() if loc.line <= 0}


def _with_vias(locs: dict, vias: dict) -> dict:
    """The locations, those of values computed from a `--set` var naming that flag too."""
    out = dict(locs)
    for path, via in vias.items():
        if path in out:
            out[path] = dataclasses.replace(out[path], via=via)
    return out


def _parts(head: spec_mod.SpecHead | None, data: dict) -> tuple[dict, dict]:
    """Blocks and shared modules; from the raw data when the top level is invalid,
    so that problems inside the model are reported in the same run."""
    if head is not None:
        return head.blocks, head.shared
    blocks: dict = {}
    for name, raw in (data.get("blocks") or {}).items() if isinstance(data.get("blocks"), dict) else []:
        try:
            blocks[name] = spec_mod.BlockDef.model_validate(raw)
        except ValueError:
            blocks[name] = None  # reported by the top-level validation; uses of it stay quiet

    shared = data.get("shared") if isinstance(data.get("shared"), dict) else {}
    return blocks, shared


def _loc(doc: Document, path: tuple) -> Loc:
    if path and path[-1] == "<key>":
        return doc.key_loc(path[:-1])
    return doc.loc(path)


def _nearest(locs: dict, path: tuple, file: str) -> Loc:
    if path and path[-1] == "<key>":
        path = path[:-1]
    for i in range(len(path), -1, -1):
        found = locs.get(path[:i])
        if found is not None:
            return found
    return Loc(file, 1, 1)


def _check_version(doc: Document) -> None:
    version = doc.data.get("netcfg")
    if isinstance(version, int) and not isinstance(version, bool) and version > spec_mod.FORMAT_VERSION:
        raise SpecError(
            f"this spec is written in netcfg format {version}; this netcfg reads format "
            f"{spec_mod.FORMAT_VERSION}: upgrade netcfg",
            doc.loc(("netcfg",)),
        )
    if isinstance(version, int) and not isinstance(version, bool) and version < 1:
        raise SpecError(
            f"unknown format version {version}; the current format is {spec_mod.FORMAT_VERSION}", doc.loc(("netcfg",))
        )


def _check_init_layers(doc: Document, head: spec_mod.SpecHead, registry: Registry) -> list[Diagnostic]:
    names = [n for n, e in registry.entries.items() if e.kind in ("layer", "merge")]
    problems = []
    for i, rule in enumerate(head.init):
        layers = [rule.layers] if isinstance(rule.layers, str) else (rule.layers or [])
        for j, name in enumerate(layers):
            if name not in names:
                path = ("init", i, "layers") + ((j,) if isinstance(rule.layers, list) else ())
                entry = registry.get(name)
                message = (
                    f"'{name}' owns no parameters of its own: init rules select leaf layer types "
                    "(select a composite's parameters with a `params` glob on its path)"
                    if entry is not None
                    else f"unknown layer type '{name}'{suggest(name, names)}"
                )
                problems.append(Diagnostic(doc.loc(path), message))
    return problems
