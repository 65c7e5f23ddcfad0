"""Safe YAML reading that remembers where every value came from.

PyYAML composes the text into a node graph with SafeLoader's scanner and parser (no
object construction at all); this module then turns nodes into plain Python data
itself, so it alone decides what is accepted:

* YAML 1.2 core-schema scalars: ``1e-3`` is a float, ``no``/``on``/``y`` are strings,
  ``0x10`` is 16, ``017`` is 17, ``1_000`` and ``3:25:45`` are strings;
* only the standard tags (str, int, float, bool, null, map, seq); a python/* tag or
  any other tag is an error, so no file can name code;
* duplicate keys are an error that quotes both lines;
* the document's values and text, aliases expanded, are counted from the parser's events
  before anything is composed, with caps (alias bombs, huge lists), and nesting has a depth
  cap (no RecursionError reaches the user).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from netcfg.errors import Diagnostic, Loc, SpecError
from netcfg.spec.budget import (
    DOCUMENT_COUNTED,
    MAX_DEPTH,
    MAX_DOCUMENT_VALUES,
    MAX_TEXT,
    too_many_values,
    too_much_text,
)

Path = tuple[str | int, ...]

MAX_INT_DIGITS = 100  # far past any size a spec holds; Python refuses to parse more than 4,300

_TAG = "tag:yaml.org,2002:"
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


class _Loader(yaml.SafeLoader):
    """SafeLoader's parser with YAML 1.2 core-schema implicit typing."""


_Loader.yaml_implicit_resolvers = {}
for _tag, _regex, _first in [
    ("bool", _BOOL, list("tTfF")),
    ("int", _INT, list("-+0123456789")),
    ("float", _FLOAT, list("-+0123456789.")),
    ("null", _NULL, ["~", "n", "N", ""]),
]:
    _Loader.add_implicit_resolver(_TAG + _tag, _regex, _first)


class _FastLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """libyaml's parser (when PyYAML has it) with the same YAML 1.2 typing: 6x faster."""


_FastLoader.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers
_LIBYAML = _FastLoader.__mro__[1] is not yaml.SafeLoader
_OPEN = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
_CLOSE = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def _compose(text: str, file: str, loader: type) -> yaml.Node | None:
    """Compose the node graph once the events have shown the document is within its budgets."""
    _scan(text, file, loader)
    return yaml.compose(text, Loader=loader)


def _scan(text: str, file: str, loader: type) -> None:
    """Refuse deep nesting and a document too large, aliases expanded, from the parser's events.

    libyaml's event parser is a state machine (no recursion) and builds nothing for the
    document, so this pass is safe at any depth and stops at the first value past a limit: a
    10 MB flat list is refused after 200,000 events, an alias of a 1 MB string by the bytes it
    repeats. The composer that follows recurses, so it only sees shallow, bounded documents.
    The place of a budget error is the innermost collection being read."""
    values, chars = MAX_DOCUMENT_VALUES, MAX_TEXT  # left
    sizes: dict[str, tuple[int, int] | None] = {}
    """Anchor -> the values and text of its node (None while the node is still open)."""
    opened: list[tuple[Any, str | None, int, int]] = []
    """For each open collection: its start, its anchor, and the budget left when it opened."""
    for event in yaml.parse(text, Loader=loader):
        kind = type(event)
        if kind is yaml.ScalarEvent:
            values -= 1
            chars -= len(event.value)
            if event.anchor is not None:
                sizes[event.anchor] = (1, len(event.value))
        elif kind in _OPEN:
            if len(opened) >= MAX_DEPTH:
                raise SpecError(f"nesting deeper than {MAX_DEPTH} levels", _mark_loc(file, event.start_mark))
            values -= 1
            opened.append((event.start_mark, event.anchor, values + 1, chars))
            if event.anchor is not None:
                sizes[event.anchor] = None
        elif kind in _CLOSE:
            _, anchor, before, chars_before = opened.pop()
            if anchor is not None:
                sizes[anchor] = (before - values, chars_before - chars)
        elif kind is yaml.AliasEvent:
            size = sizes.get(event.anchor, (0, 0))  # an undefined alias: the composer says so
            if size is None:
                raise SpecError("an alias refers to a node that contains it", _mark_loc(file, event.start_mark))
            values -= size[0]
            chars -= size[1]
        if values < 0 or chars < 0:
            where = _mark_loc(file, opened[-1][0] if opened else event.start_mark)
            if values < 0:
                raise SpecError(too_many_values("the document", MAX_DOCUMENT_VALUES, DOCUMENT_COUNTED), where)
            raise SpecError(too_much_text("the document", MAX_TEXT, DOCUMENT_COUNTED), where)


@dataclass
class Document:
    """Plain data read from YAML plus the location of every value and key."""

    data: Any
    file: str
    locs: dict[Path, Loc] = field(default_factory=dict)
    key_locs: dict[Path, Loc] = field(default_factory=dict)

    def loc(self, path: Path) -> Loc:
        """Location of the value at ``path``, or of its nearest located ancestor."""
        for i in range(len(path), -1, -1):
            found = self.locs.get(path[:i])
            if found is not None:
                return found
        return Loc(self.file, 1, 1)

    def key_loc(self, path: Path) -> Loc:
        return self.key_locs.get(path) or self.loc(path)


def read_yaml(text: str, file: str) -> Document:
    """Parse YAML text into a Document, or raise SpecError with every problem found."""
    root = _root(text, file)
    doc = Document(data=None, file=file)
    if root is None:
        return doc
    reader = _Reader(doc)
    doc.data = reader.value(root, ())
    if reader.problems:
        raise SpecError(reader.problems)
    return doc


def _root(text: str, file: str) -> yaml.Node | None:
    try:
        return _compose(text, file, _FastLoader)
    except yaml.YAMLError as exc:
        if len(text) > DETAILED_UP_TO:
            raise _refusal(exc, text, file, offsets_in_bytes=_LIBYAML) from None
    # libyaml's messages drop details (which character, which alias): parse again with
    # PyYAML's own parser (slower, but only on this path) for its message.
    try:
        return _compose(text, file, _Loader)
    except RecursionError:
        raise SpecError(f"nesting deeper than {MAX_DEPTH} levels", Loc(file, 1, 1)) from None
    except yaml.YAMLError as exc:
        raise _refusal(exc, text, file, offsets_in_bytes=False) from None


DETAILED_UP_TO = 256 * 1024
"""Characters of a file refused by libyaml that PyYAML's own parser reads again for its more
detailed message: it reads about 2.5 µs a character (a megabyte takes seconds); a larger file gets
libyaml's message, at the same place."""


def _refusal(exc: yaml.YAMLError, text: str, file: str, offsets_in_bytes: bool) -> SpecError:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        message = _yaml_message(exc)
        if "tabs)" not in message and _character_at(text, mark) == "\t":  # libyaml does not say which
            message += " (a tab: indent with spaces, not tabs)"
        return SpecError(message, _mark_loc(file, mark))
    if isinstance(exc, yaml.reader.ReaderError):  # a control character: said at its place
        position = exc.position  # libyaml counts the bytes of the UTF-8 text, PyYAML characters
        before = text.encode("utf-8")[:position].decode("utf-8", "replace") if offsets_in_bytes else text[:position]
        line, col = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return SpecError(f"control character {char!r} (#x{ord(char):04x}) is not allowed in YAML", Loc(file, line, col))
    return SpecError(f"cannot read YAML: {str(exc).splitlines()[0]}", Loc(file, 1, 1))


def _same_place(a: Any, b: Any) -> bool:
    return b is not None and (a.line, a.column) == (b.line, b.column)


def _character_at(text: str, mark: Any) -> str:
    if mark is None:
        return ""
    lines = text.split("\n", mark.line + 1)
    line = lines[mark.line] if mark.line < len(lines) else ""
    return line[mark.column : mark.column + 1]


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or "cannot parse"
    if "another document" in problem:
        return "a spec file holds one YAML document; another one starts here"
    if "'\\t'" in problem or "tab character" in problem:
        problem += " (indent with spaces, not tabs)"
    where = exc.context_mark
    opens = exc.context and exc.context.startswith(("while parsing a ", "while scanning a "))
    if opens and where is not None and not _same_place(where, exc.problem_mark):
        opened = exc.context.replace("while ", "").replace("parsing ", "").replace("scanning ", "")
        opened = "the " + opened[2:] if opened.startswith("a ") else opened
        return f"invalid YAML: {problem} (in {opened} that starts at line {where.line + 1}, column {where.column + 1})"
    return f"invalid YAML: {problem}"


def _mark_loc(file: str, mark: Any) -> Loc:
    if mark is None:
        return Loc(file, 1, 1)
    return Loc(file, mark.line + 1, mark.column + 1)


class _Reader:
    """Turns a composed node graph into plain data, recording locations."""

    def __init__(self, doc: Document):
        self.doc = doc
        self.problems: list[Diagnostic] = []

    def where(self, node: yaml.Node) -> Loc:
        return _mark_loc(self.doc.file, node.start_mark)

    def fail(self, node: yaml.Node, message: str) -> None:
        self.problems.append(Diagnostic(self.where(node), message))

    def value(self, node: yaml.Node, path: Path) -> Any:
        if len(path) > MAX_DEPTH:  # an alias of a deep node, deep in the document
            raise SpecError(f"nesting deeper than {MAX_DEPTH} levels", self.where(node))
        self.doc.locs[path] = self.where(node)
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            self.check_tag(node, "seq")
            return [self.value(item, path + (i,)) for i, item in enumerate(node.value)]
        return self.scalar(node)

    def check_tag(self, node: yaml.Node, expected: str) -> None:
        if node.tag != _TAG + expected:
            self.fail(node, f"unsupported YAML tag '{_short_tag(node.tag)}': netcfg files hold plain data only")

    def mapping(self, node: yaml.MappingNode, path: Path) -> dict:
        self.check_tag(node, "map")
        out: dict = {}
        first_seen: dict[Any, Loc] = {}
        for key_node, value_node in node.value:
            key = self.key(key_node)
            if key is None:
                continue
            if key == "<<" and not key_node.style:  # plain, not quoted
                self.fail(key_node, "YAML merge keys (<<) are not part of YAML 1.2: write the keys out, "
                                    "or make the shared part a block template")  # fmt: skip
                continue
            key_where = self.where(key_node)
            if key in first_seen:
                before = first_seen[key]
                self.fail(key_node, f"duplicate key '{key}' (first defined at line {before.line})")
                continue
            first_seen[key] = key_where
            self.doc.key_locs[path + (key,)] = key_where
            out[key] = self.value(value_node, path + (key,))
        return out

    def key(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, "mapping keys must be plain scalars")
            return None
        key = self.scalar(node)
        if isinstance(key, bool) or key is None or isinstance(key, float):
            return str(node.value)
        return key

    def scalar(self, node: yaml.ScalarNode) -> Any:
        tag = node.tag[len(_TAG) :] if node.tag.startswith(_TAG) else None
        text = node.value
        if tag == "str":
            return text
        if tag == "null" and _NULL.match(text):
            return None
        if tag == "bool" and _BOOL.match(text):
            return text.lower() == "true"
        if tag == "int" and _INT.match(text):
            if len(text) > MAX_INT_DIGITS:
                self.fail(node, f"an integer of {len(text):,} digits is too large")
                return None
            return _to_int(text)
        if tag == "float" and (_FLOAT.match(text) or _INT.match(text)):
            return _to_float(text)
        if tag in ("null", "bool", "int", "float"):
            self.fail(node, f"'{text}' is not a valid !!{tag}")
            return None
        self.fail(node, f"unsupported YAML tag '{_short_tag(node.tag)}': netcfg files hold plain data only")
        return None


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


def _to_int(text: str) -> int:
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _to_float(text: str) -> float:
    lowered = text.lower()
    if lowered.endswith(".inf"):
        return -math.inf if lowered.startswith("-") else math.inf
    if lowered == ".nan":
        return math.nan
    return float(text)
