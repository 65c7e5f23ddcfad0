"""Partial reuse: initialize parts of a model from checkpoints, through key rules.

Each `pretrained:` entry names a safetensors file and rules (netcfg.spec.keymap) that turn its
keys into model keys: `ignore` patterns, `rename` rules (regular expressions with groups, with a
transform, a fuse of several tensors or a split of one), then `map` prefixes (the longest
matching prefix wins), its own rules before those of a shipped `keymap`.

Everything is planned from the files' headers before any tensor is read (`plan`): every rule
that matches nothing, two sources for one model tensor, a target the model lacks, a shape,
dtype or rank that does not fit, a fuse missing a part are reported together, each naming the
file and the key, and nothing is loaded. Then model tensors no entry loads and file tensors no
rule takes are one warning each (counted), one error with `strict: true`, or nothing with
`strict: false`. Only then are tensors read (`_read_tensor`, the one place that reads data).
"""

from __future__ import annotations

import bisect
import contextlib
import signal
import threading
from dataclasses import dataclass, field
from math import prod
from pathlib import Path

import torch

from netcfg.building.builder import Built, build_spec
from netcfg.errors import CheckpointError, Diagnostic, Loc
from netcfg.io.reading import SAFETENSORS_NAMES, read_tensors
from netcfg.io.shards import Checkpoint, read_checkpoint
from netcfg.spec.keymap import MAX_KEY, RenameRule, expand, pattern, shipped
from netcfg.spec.model import PretrainedSource
from netcfg.suggest import MAX_LISTED, Suggestions

MATCH_SECONDS = 10.0
"""Time the patterns of one entry may take over all its file's keys (real ones take milliseconds)."""


@dataclass(frozen=True)
class Load:
    """One model tensor and where its values come from."""

    target: str
    keys: tuple[str, ...]
    """File keys: one, or the parts of a fuse in row order."""
    rule: str
    """The rule that made it: "map '0.'", "rename 2", "keymap hf_gpt2 rename 0"."""
    transform: str | None = None
    rows: tuple[int, int] | None = None
    """A split: rows [start, end) of the (transformed) file tensor."""

    def how(self) -> str:
        """The transform in words ('' for a plain copy)."""
        steps = [self.transform] if self.transform else []
        if len(self.keys) > 1:
            steps.append(f"fuse {len(self.keys)}")
        if self.rows is not None:
            steps.append(f"split rows {self.rows[0]}:{self.rows[1]}")
        return ", ".join(steps)


@dataclass
class Entry:
    """One `pretrained:` entry, planned."""

    index: int
    source: PretrainedSource
    header: Checkpoint
    where: Loc
    loads: list[Load] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def origin(self, load: Load) -> str:
        """'file:key' (fused parts joined by ' + '), and the transform in parentheses."""
        how = load.how()
        return f"{self.header.path}:{' + '.join(load.keys)}" + (f" ({how})" if how else "")


@dataclass
class Plan:
    entries: list[Entry]
    missing: list[str]
    """Model tensors (first name of each tie group) that no entry loads."""
    warnings: list[str]
    refusals: list[Diagnostic]
    """What `strict: true` makes an error (empty otherwise)."""

    def origins(self) -> dict[str, str]:
        return {load.target: entry.origin(load) for entry in self.entries for load in entry.loads}


def apply(built: Built) -> dict[str, str]:
    """Load every `pretrained:` source into `built.model` (all of them or none); adds the
    warnings to `built.warnings`; returns model key -> 'file:key (transform)'."""
    found = plan(built)
    if found.refusals:
        raise CheckpointError(found.refusals)
    built.warnings += found.warnings
    _copy(built, found)
    return found.origins()


def apply_sharded(built: Built, meta: Built, put) -> dict[str, str]:
    """`apply` for a sharded model (FSDP2/HSDP), planned against `meta`: the same model built on
    meta in the spec's dtype (the shards of a bfloat16 model are float32). Each rank reads each
    tensor it loads whole, one at a time, and `put(model tensor, full value)` keeps its part."""
    found = plan(meta)
    if found.refusals:
        raise CheckpointError(found.refusals)
    built.warnings += found.warnings
    state = built.model.state_dict(keep_vars=True)
    with torch.no_grad():
        for entry in found.entries:
            last: dict[str, torch.Tensor] = {}
            for load in entry.loads:
                target = state[load.target]
                put(target, _value(entry.header, load, last, tuple(target.shape)))
                if not entry.source.trainable and isinstance(target, torch.nn.Parameter):
                    target.requires_grad_(False)
    return found.origins()


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


# ---------------------------------------------------------------- the dry run


@dataclass
class MappedTensor:
    target: str
    shape: list[int]
    keys: list[str]
    """File keys (several: the parts of a fuse, in row order)."""
    transform: str
    rule: str


@dataclass
class EntryMap:
    index: int
    file: str
    keymap: str | None
    tensors: int
    """Tensors in the file."""
    loaded: list[MappedTensor]
    """In the model's order."""
    unused: list[str]
    ignored: list[str]


@dataclass
class LoadMap:
    """What `netcfg load-map` prints: the whole mapping, from the headers (no tensor read)."""

    entries: list[EntryMap]
    missing: list[str]
    """Model tensors no entry loads (a tie group by its first name)."""
    warnings: list[str]
    refusals: list[Diagnostic] = field(default_factory=list)
    """What `strict: true` refuses (the mapping is shown all the same)."""


def load_map(spec) -> LoadMap:
    """Plan the spec's `pretrained:` entries on the meta device, reading only the files' headers."""
    built = build_spec(spec, device="meta")
    found = plan(built)
    order = {name: i for i, name in enumerate(built.model.state_dict(keep_vars=True))}
    shapes = {name: list(t.shape) for name, t in built.model.state_dict(keep_vars=True).items()}
    entries = []
    for e in found.entries:
        loads = sorted(e.loads, key=lambda load: order[load.target])
        rows = [MappedTensor(x.target, shapes[x.target], list(x.keys), x.how(), x.rule) for x in loads]
        entries.append(EntryMap(e.index, e.header.path, e.source.keymap, len(e.header.tensors), rows, e.unused,
                                e.ignored))  # fmt: skip
    return LoadMap(entries, found.missing, found.warnings, found.refusals)


# ---------------------------------------------------------------- planning (headers only)


def plan(built: Built) -> Plan:
    """Every entry's loads, checked against the model, from the files' headers alone; raises
    one CheckpointError listing every problem of every entry."""
    model = _Model(built.model.state_dict(keep_vars=True))
    entries, problems = [], []
    for index, source in enumerate(built.spec.head.pretrained):
        entry = _entry(built, index, source)
        problems += _Matcher(built, entry, model).run()
        entries.append(entry)
    problems += model.conflicts
    if problems:
        raise CheckpointError(problems)
    return _leftovers(built, entries, model)


def _entry(built: Built, index: int, source: PretrainedSource) -> Entry:
    where = built.spec.loc(("pretrained", index))
    path = _resolve(built.spec.file, source.file)
    try:
        header = _read_header(path)
    except CheckpointError as exc:  # said at the spec's entry, naming the file
        raise CheckpointError(f"pretrained {index}: {path}: {exc.diagnostics[0].message}", where) from None
    return Entry(index, source, header, where)


def _resolve(spec_file: str, file: str) -> Path:
    path = Path(file)
    return path if path.is_absolute() else Path(spec_file).parent / path


def _read_header(path: Path) -> Checkpoint:
    """The checked headers of a `pretrained:` file, or of a sharded checkpoint's index and its
    shards (the one place that opens one)."""
    return read_checkpoint(path)


class _Model:
    """The model's tensors by key, their tie groups, and who loads each (across entries)."""

    def __init__(self, state: dict):
        self.state = state
        first: dict[int, str] = {}
        self.group = {name: first.setdefault(id(t), name) for name, t in state.items()}
        self.names = Suggestions(list(state))
        self.loaded_by: dict[str, tuple[Entry, Load]] = {}
        self.conflicts: list[Diagnostic] = []

    def claim(self, entry: Entry, load: Load, where: Loc) -> None:
        """Record that `load` sets its target; a tensor set twice is a conflict."""
        group = self.group[load.target]
        if group in self.loaded_by:
            other_entry, other = self.loaded_by[group]
            tied = "" if other.target == load.target else f" (tied to '{other.target}')"
            rule = other.rule if other_entry is entry else f"pretrained {other_entry.index} {other.rule}"
            if other_entry.header.path == entry.header.path:  # the file named once
                sources = f"from {entry.header.path}: {_keys(load)} and {_keys(other)}"
            else:
                sources = f"from {entry.origin(load)} and {other_entry.origin(other)}"
            message = f"pretrained {entry.index}: {load.rule} and {rule} both load '{load.target}'{tied}: {sources}"
            self.conflicts.append(Diagnostic(where, message))
        else:
            self.loaded_by[group] = (entry, load)


@dataclass
class _Rule:
    label: str
    where: Loc
    optional: bool
    """A shipped map's rule: it covers several layouts, so it may match nothing."""
    rename: RenameRule | None = None
    target: str = ""
    """A prefix rule's model prefix."""
    hits: list[str] = field(default_factory=list)


class _Matcher:
    """Matches one entry's file keys to its rules, then checks what they make."""

    def __init__(self, built: Built, entry: Entry, model: _Model):
        self.entry, self.model, self.spec = entry, model, built.spec
        self.problems: dict[str, list[Diagnostic]] = {}
        source, index = entry.source, entry.index
        keymap = shipped(source.keymap) if source.keymap else None
        at_keymap = self.spec.loc(("pretrained", index, "keymap"))
        self.ignore = [pattern(p) for p in source.ignore + (keymap.ignore if keymap else [])]
        self.renames = [_Rule(f"rename {j}", self.spec.loc(("pretrained", index, "rename", j)), False, rule)
                        for j, rule in enumerate(source.rename)]  # fmt: skip
        self.prefixes = {p: _Rule(f"map '{p}'", self.spec.loc(("pretrained", index, "map", p)), False, target=t)
                         for p, t in source.prefixes().items()}  # fmt: skip
        if keymap:
            self.renames += [_Rule(f"keymap {source.keymap} rename {j}", at_keymap, True, rule)
                             for j, rule in enumerate(keymap.rename)]  # fmt: skip
            for p, t in keymap.map.items():
                self.prefixes.setdefault(p, _Rule(f"keymap {source.keymap} map '{p}'", at_keymap, True, target=t))
        self.lengths = sorted({len(p) for p in self.prefixes}, reverse=True)
        self.fused: dict[tuple[int, str], list[str | None]] = {}
        self.by_label: dict[str, _Rule] = {}

    def run(self) -> list[Diagnostic]:
        names = sorted(self.entry.header.tensors)
        with _time_limit(MATCH_SECONDS, self.entry.where, f"pretrained {self.entry.index}: the key patterns"):
            for key in names:
                self._take(key)
            self._unmatched(names)  # matches again, for the rules that took nothing
        self._fuses()
        loads = list(self.entry.loads)
        self.entry.loads = []
        for load in loads:
            self._check(load)
        out = []
        for kind, listed in self.problems.items():
            out += _listed(listed, f"pretrained {self.entry.index}: ... and {{}} more {kind}", self.entry.where)
        return out

    # -------------------------------------------------------- matching

    def _take(self, key: str) -> None:
        patterned = len(key) <= MAX_KEY  # a longer key is never given to a pattern
        if patterned and any(p.fullmatch(key) for p in self.ignore):
            self.entry.ignored.append(key)
            return
        if patterned:
            for rule in self.renames:
                for part, compiled in enumerate(rule.rename.patterns()):
                    match = compiled.fullmatch(key)
                    if match:
                        rule.hits.append(key)
                        self._renamed(rule, part, match, key)
                        return
        for length in self.lengths:
            rule = self.prefixes.get(key[:length]) if length <= len(key) else None
            if rule is not None:
                rule.hits.append(key)
                self.entry.loads.append(Load(rule.target + key[length:], (key,), rule.label))
                return
        self.entry.unused.append(key)

    def _renamed(self, rule: _Rule, part: int, match, key: str) -> None:
        rename = rule.rename
        targets = [expand(t, match) for t in rename.targets()]
        if isinstance(rename.regex, list):  # a fuse: collect the parts, one per pattern
            parts = self.fused.setdefault((id(rule), targets[0]), [None] * len(rename.regex))
            if parts[part] is not None:
                self._problem("rules that take two tensors for one part", rule.where,
                              f"{rule.label} takes both '{parts[part]}' and '{key}' of {self.entry.header.path} "
                              f"as part {part + 1} of '{targets[0]}'")  # fmt: skip
            parts[part] = key
            return
        if len(targets) == 1:
            self.entry.loads.append(Load(targets[0], (key,), rule.label, rename.transform))
            return
        self._split(rule, key, targets)

    def _split(self, rule: _Rule, key: str, targets: list[str]) -> None:
        """One load per target, each taking as many rows as its model tensor has; together all of them."""
        missing = [t for t in targets if t not in self.model.state]
        for target in missing:
            self._not_in_model(rule, key, target)
        if missing:
            return
        rows = [int(self.model.state[t].shape[0]) if self.model.state[t].dim() else 0 for t in targets]
        info = self.entry.header.tensors[key]
        shape = _transposed(info.shape) if rule.rename.transform == "transpose" and len(info.shape) == 2 else info.shape
        if len(shape) and shape[0] != sum(rows):
            self._problem("tensors that do not fit", rule.where,
                          f"{self.entry.header.path}: '{key}' has {shape[0]} rows, its split targets "
                          f"{sum(rows)} ({' + '.join(map(str, rows))})")  # fmt: skip
            return
        start = 0
        for target, count in zip(targets, rows, strict=True):
            self.entry.loads.append(Load(target, (key,), rule.label, rule.rename.transform, (start, start + count)))
            start += count

    def _fuses(self) -> None:
        rules = {id(r): r for r in self.renames}
        for (rule_id, target), parts in self.fused.items():
            rule = rules[rule_id]
            if None in parts:
                lacking = rule.rename.regex[parts.index(None)]
                self._problem("incomplete fuses", rule.where,
                              f"{rule.label}: {self.entry.header.path} has no tensor for part "
                              f"{parts.index(None) + 1} ('{lacking}') of '{target}'")  # fmt: skip
            else:
                self.entry.loads.append(Load(target, tuple(parts), rule.label, rule.rename.transform))

    def _unmatched(self, names: list[str]) -> None:
        """Every rule of the entry's own must take a tensor (a shipped map's need not)."""
        path = self.entry.header.path
        for rule in self.renames:
            if not rule.hits and not rule.optional:
                patterns = rule.rename.patterns()
                taken = any(p.fullmatch(k) for k in names if len(k) <= MAX_KEY for p in patterns)
                why = "takes no tensor: an earlier rule takes every key it matches" if taken else "matches no tensor"
                self._problem("rules that match nothing", rule.where, f"{rule.label} {why} of {path}")
        prefixes = Suggestions(sorted({k.split(".")[0] + "." for k in names}))
        for prefix, rule in self.prefixes.items():
            if not rule.hits and not rule.optional and prefix:
                if _starting_with(names, prefix):
                    message = (
                        f"'{prefix}' takes no tensor of {path}: longer prefixes or renames take every key it matches"
                    )
                else:
                    message = f"'{prefix}' matches no tensor of {path}{prefixes(prefix)}"
                self._problem("rules that match nothing", rule.where, message)

    # -------------------------------------------------------- checking

    def _check(self, load: Load) -> None:
        rule = self._rule(load)
        if load.target not in self.model.state:
            self._not_in_model(rule, load.keys[0], load.target)
            return
        problem = self._misfit(load)
        if problem:
            self._problem("tensors that do not fit", rule.where, f"{self.entry.header.path}: {problem}")
            return
        self.entry.loads.append(load)
        self.model.claim(self.entry, load, rule.where)

    def _rule(self, load: Load) -> _Rule:
        if not self.by_label:
            self.by_label = {r.label: r for r in [*self.renames, *self.prefixes.values()]}
        return self.by_label[load.rule]

    def _not_in_model(self, rule: _Rule, key: str, target: str) -> None:
        self._problem("tensors that do not fit", rule.where,
                      f"'{key}' maps to '{target}', which is not in the model{self.model.names(target)}")  # fmt: skip

    def _misfit(self, load: Load) -> str:
        """Why the file's tensors cannot make the model tensor, or ''."""
        want = self.model.state[load.target]
        infos = [self.entry.header.tensors[k] for k in load.keys]
        if load.transform == "transpose":
            for info in infos:
                if len(info.shape) != 2:
                    return f"{load.rule}: transpose needs a 2-d tensor, '{info.name}' is {list(info.shape)}"
        dtype = SAFETENSORS_NAMES.get(want.dtype)
        shapes = [_transposed(i.shape) if load.transform == "transpose" else i.shape for i in infos]
        made = _made_shape(load, shapes, tuple(want.shape))
        if made == tuple(want.shape) and all(i.dtype == dtype for i in infos):
            return ""
        dtypes = " + ".join(dict.fromkeys(i.dtype for i in infos))
        sizes = " + ".join(f"{list(s)}" for s in shapes)
        how = f" ({load.how()})" if load.how() else ""
        return (f"'{' + '.join(load.keys)}' is {dtypes} {sizes}{how} in the file, "
                f"'{load.target}' is {dtype} {list(want.shape)} in the model")  # fmt: skip

    def _problem(self, kind: str, where: Loc, message: str) -> None:
        self.problems.setdefault(kind, []).append(Diagnostic(where, f"pretrained {self.entry.index}: {message}"))


def _keys(load: Load) -> str:
    return " + ".join(f"'{k}'" for k in load.keys)


def _transposed(shape: tuple) -> tuple:
    return (shape[1], shape[0])


def _made_shape(load: Load, shapes: list[tuple], want: tuple) -> tuple | None:
    """The shape the load makes from the (transformed) file shapes, None if it cannot."""
    if load.transform == "reshape":
        return want if prod(shapes[0]) == prod(want) else None
    if len(shapes) > 1:  # a fuse: rows concatenated, the other dimensions equal
        if any(len(s) == 0 or s[1:] != shapes[0][1:] for s in shapes):
            return None
        return (sum(s[0] for s in shapes), *shapes[0][1:])
    shape = shapes[0]
    if load.rows is not None:  # a split (its rows add up to the tensor's: checked when planned)
        return (load.rows[1] - load.rows[0], *shape[1:]) if shape else None
    return tuple(shape)


def _starting_with(names: list[str], prefix: str) -> list[str]:
    """The sorted names that start with `prefix`: they follow one another from its place."""
    start = end = bisect.bisect_left(names, prefix)
    while end < len(names) and names[end].startswith(prefix):
        end += 1
    return names[start:end]


def _listed(problems: list[Diagnostic], more: str, where: Loc) -> list[Diagnostic]:
    """The first MAX_LISTED problems, and a line counting the others."""
    rest = len(problems) - MAX_LISTED
    return problems[:MAX_LISTED] + ([Diagnostic(where, more.format(f"{rest:,}"))] if rest > 0 else [])


@contextlib.contextmanager
def _time_limit(seconds: float, where: Loc, what: str):
    """Stop matching past `seconds` with one error: the safe subset of patterns rules out
    exponential backtracking, not a polynomial that long keys make slow. Python's `re` checks
    for signals while it matches, so an alarm interrupts it; only the main thread gets signals,
    and a timer someone else set is left alone (then no limit)."""
    usable = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    if not usable or signal.getitimer(signal.ITIMER_REAL)[0] > 0:
        yield
        return

    def expired(signum, frame):
        raise _TooSlow

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _TooSlow:
        raise CheckpointError(f"{what} took over {seconds:g} s: simplify them (fewer open-ended '.*')", where) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL if previous is None else previous)  # None: set outside Python


class _TooSlow(Exception):
    pass


# ---------------------------------------------------------------- what is left over


def _leftovers(built: Built, entries: list[Entry], model: _Model) -> Plan:
    """Model tensors no entry loads, file tensors no rule takes: warnings, or errors (strict)."""
    missing = [name for name, group in model.group.items() if group == name and name not in model.loaded_by]
    if not entries:
        return Plan([], [], [], [])
    found = Plan(entries, missing, [], [])
    modes = [e.source.strict for e in entries]
    strictest = True if True in modes else ("warn" if "warn" in modes else False)
    where = built.spec.loc(("pretrained",))
    _report(found, strictest, where, f"{len(missing):,} model tensors are not loaded by `pretrained:`", missing)
    for e in entries:
        subject = f"pretrained {e.index}: {len(e.unused):,} tensors of {e.header.path} are not used by any rule"
        _report(found, e.source.strict, e.where, subject, e.unused)
    return found


def _report(found: Plan, mode, where: Loc, subject: str, names: list[str]) -> None:
    if not names or mode is False:
        return
    listed = ", ".join(f"'{n}'" for n in names[:MAX_LISTED])
    more = f" and {len(names) - MAX_LISTED:,} more" if len(names) > MAX_LISTED else ""
    if mode is True:
        found.refusals.append(Diagnostic(where, f"{subject}: {listed}{more} (strict: true)"))
    else:
        found.warnings.append(f"{where}: warning: {subject}: {listed}{more} (strict: false silences this)")


# ---------------------------------------------------------------- copying


def _copy(built: Built, found: Plan) -> None:
    state = built.model.state_dict(keep_vars=True)
    for entry in found.entries:
        if not entry.source.trainable:
            for load in entry.loads:
                if isinstance(state[load.target], torch.nn.Parameter):
                    state[load.target].requires_grad_(False)
    if built.device.type == "meta":
        return  # checked against the headers; no data to copy
    with torch.no_grad():
        for entry in found.entries:
            last: dict[str, torch.Tensor] = {}  # a split reads its file tensor once for all its parts
            for load in entry.loads:
                state[load.target].copy_(_value(entry.header, load, last, tuple(state[load.target].shape)))


def _value(header: Checkpoint, load: Load, last: dict, shape: tuple) -> torch.Tensor:
    """The model tensor's values: the file tensors, transformed, fused or split."""
    parts = []
    for key in load.keys:
        if key not in last:
            last.clear()
            last[key] = _read_tensor(header, key)
        tensor = last[key]
        parts.append(tensor.t() if load.transform == "transpose" else tensor)
    value = torch.cat(parts, dim=0) if len(parts) > 1 else parts[0]
    if load.rows is not None:
        value = value[load.rows[0] : load.rows[1]]
    return value.reshape(shape) if load.transform == "reshape" else value


def _read_tensor(header: Checkpoint, key: str) -> torch.Tensor:
    """One file tensor into new CPU memory (the one place `pretrained:` reads tensor data)."""
    return read_tensors(header, torch.device("cpu"), [key])[key]
