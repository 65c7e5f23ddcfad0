"""Key rules of `pretrained:` entries and the key maps netcfg ships. No torch.

A checkpoint's tensor names (keys) become model keys by three kinds of rule:

* ``ignore``: patterns of file keys that are deliberately not loaded (a causal-mask buffer);
* ``rename``: regular expressions with groups; a list of patterns fuses their tensors (q, k, v ->
  qkv), a list of targets splits one tensor (qkv -> q, k, v);
* ``map``: name prefixes, the longest matching prefix wins, ``""`` catches what no other takes.

A shipped key map is a YAML file of these rules under ``netcfg/spec/keymaps/``, chosen by name
from the closed registry `KEYMAPS` (a spec names a map, never a path).

Patterns come from a spec, which may come from anywhere: they are Python ``re`` patterns, but a
safe subset checked on the parsed pattern before it is compiled (at most `MAX_PATTERN`
characters; no backreference, lookaround or conditional; no repetition or alternation inside a
repetition), which rules out exponential backtracking. What is left is polynomial in the key's
length, so keys longer than `MAX_KEY` are never matched, and `netcfg.actions.pretrained` stops
matching after a time limit. Replacement templates are netcfg's own: ``\\1`` .. ``\\99`` and
``\\g<name>`` for groups, checked against the pattern when the spec is validated.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from netcfg.errors import SpecError
from netcfg.spec.validate import pydantic_problems
from netcfg.spec.yaml_source import read_yaml

try:  # the parser `re.compile` itself uses (Python 3.11 renamed the module)
    from re import _constants as _ops  # type: ignore[attr-defined]
    from re import _parser as _sre
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _ops  # type: ignore[no-redef]
    import sre_parse as _sre  # type: ignore[no-redef]

MAX_PATTERN = 500
"""Characters in one key pattern (real ones take 60)."""
MAX_KEY = 1000
"""Keys longer than this are never matched by a pattern (real ones take 100): they stay unused."""
MAX_PARTS = 8
"""Patterns one fuse takes, targets one split gives."""

_RULES_CONFIG = ConfigDict(extra="forbid", strict=True, frozen=True, use_attribute_docstrings=True, defer_build=True)

# ---------------------------------------------------------------- patterns

_REPEATS = {_ops.MAX_REPEAT, _ops.MIN_REPEAT} | (
    {_ops.POSSESSIVE_REPEAT} if hasattr(_ops, "POSSESSIVE_REPEAT") else set()
)
_REFUSED = {
    _ops.GROUPREF: "a backreference", _ops.GROUPREF_EXISTS: "a conditional group",
    _ops.ASSERT: "a lookahead or lookbehind", _ops.ASSERT_NOT: "a lookahead or lookbehind",
}  # fmt: skip
_NESTED = "{} inside a repetition is not allowed in a key pattern (it can take exponential time)"


def compile_pattern(text: str) -> re.Pattern:
    """The compiled pattern, or ValueError saying why it is refused (size first, then syntax,
    then the constructs that can backtrack exponentially)."""
    if len(text) > MAX_PATTERN:
        raise ValueError(f"a key pattern of {len(text):,} characters (at most {MAX_PATTERN})")
    try:
        parsed = _sre.parse(text)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    problem = _unsafe(list(parsed), repeated=False)
    if problem:
        raise ValueError(problem)
    return re.compile(text)


def _unsafe(items: list, repeated: bool) -> str:
    """The first construct of the parsed pattern outside the safe subset, or ''."""
    for op, arg in items:
        if op in _REFUSED:
            return f"{_REFUSED[op]} is not supported in a key pattern"
        if op in _REPEATS:
            low, high, body = arg
            inside = high > 1  # `x?` is a choice, not a repetition
            if inside and repeated:
                return _NESTED.format("a repetition")
            problem = _unsafe(list(body), repeated or inside)
        elif op is _ops.BRANCH:
            if repeated:
                return _NESTED.format("an alternation")
            problem = next((p for branch in arg[1] if (p := _unsafe(list(branch), repeated))), "")
        elif op is _ops.SUBPATTERN:
            problem = _unsafe(list(arg[-1]), repeated)
        elif op is getattr(_ops, "ATOMIC_GROUP", None):
            problem = _unsafe(list(arg), repeated)
        else:
            problem = ""
        if problem:
            return problem
    return ""


# ---------------------------------------------------------------- templates

_GROUP_REF = re.compile(r"\\(?:(\d{1,2})|g<([A-Za-z_][A-Za-z0-9_]*)>)")


def check_template(template: str, pattern: re.Pattern) -> None:
    """ValueError unless every backslash of `template` names a group of `pattern`."""
    for ref in _GROUP_REF.finditer(template):
        number, name = ref.groups()
        if number is not None and not 1 <= int(number) <= pattern.groups:
            raise ValueError(f"'{ref.group()}' in '{template}': the pattern '{pattern.pattern}' has "
                             f"{pattern.groups} group(s)")  # fmt: skip
        if name is not None and name not in pattern.groupindex:
            raise ValueError(f"'{ref.group()}' in '{template}': the pattern '{pattern.pattern}' has no group '{name}'")
    if "\\" in _GROUP_REF.sub("", template):
        raise ValueError(f"'{template}': a backslash in a target is a group (\\1 .. \\99 or \\g<name>)")


def expand(template: str, match: re.Match) -> str:
    """`template` with its group references replaced by what `match` captured ('' if nothing)."""
    return _GROUP_REF.sub(lambda ref: match.group(int(ref[1]) if ref[1] else ref[2]) or "", template)


# ---------------------------------------------------------------- rules

_Parts = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=2, max_length=MAX_PARTS)]


class RenameRule(BaseModel):
    r"""A regular-expression rename: each file key the pattern matches as a whole becomes `to`."""

    model_config = _RULES_CONFIG

    regex: Union[Annotated[str, Field(min_length=1)], _Parts]
    r"""Pattern a whole file key must match (Python `re`, safe subset), e.g. '^h\.(\d+)\.attn\.c_attn\.weight$'.
    A list of patterns fuses: each target is made of one tensor per pattern, rows concatenated in
    the list's order (q, k, v -> netcfg's fused qkv)."""
    to: Union[Annotated[str, Field(min_length=1)], _Parts]
    r"""Model key; \1 .. \99 and \g<name> insert the pattern's groups. A list of keys splits the
    file tensor's rows into them, in order, each taking as many rows as its model tensor has."""
    transform: Optional[Literal["transpose", "reshape"]] = None
    """transpose: a 2-d file tensor is transposed (Conv1D weights; each part before a fuse, the
    whole before a split); reshape: the file tensor takes the model tensor's shape (same elements)."""

    @model_validator(mode="after")
    def _checked(self) -> RenameRule:
        if isinstance(self.regex, list) and isinstance(self.to, list):
            raise ValueError("a rule either fuses (a list of patterns) or splits (a list of targets), not both")
        if self.transform == "reshape" and (isinstance(self.regex, list) or isinstance(self.to, list)):
            raise ValueError("reshape applies to one file tensor and one model tensor (no fuse or split)")
        for compiled in self.patterns():
            for target in self.targets():
                check_template(target, compiled)
        return self

    def patterns(self) -> list[re.Pattern]:
        return [pattern(p) for p in ([self.regex] if isinstance(self.regex, str) else self.regex)]

    def targets(self) -> list[str]:
        return [self.to] if isinstance(self.to, str) else list(self.to)


@functools.lru_cache(maxsize=1024)
def pattern(text: str) -> re.Pattern:
    """`compile_pattern`, cached (the rules of a map are used for every key of a file)."""
    return compile_pattern(text)


class Rules(BaseModel):
    """Key rules: those of a `pretrained:` entry, and what a shipped key map holds."""

    model_config = _RULES_CONFIG

    ignore: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    """Patterns of file keys not to load (they are not reported as unused)."""
    rename: list[RenameRule] = Field(default_factory=list)
    """Regular-expression renames; a file key is taken by the first rule that matches it."""
    map: dict[str, str] = Field(default_factory=dict)
    """Name prefix in the file -> name prefix in the model; the longest matching prefix wins."""

    @model_validator(mode="after")
    def _checked_ignore(self) -> Rules:
        for text in self.ignore:
            pattern(text)  # ValueError names the problem
        return self


class KeyRules(Rules):
    """A shipped key map: its rules and what it maps (netcfg/spec/keymaps/NAME.yaml)."""

    description: str


# ---------------------------------------------------------------- shipped maps

KEYMAPS: dict[str, str] = {
    "torchvision_resnet": "torchvision ResNet-18/34/50/101/152 state_dict -> configs/resnet*.yaml (same names)",
    "torchvision_vit": "torchvision ViT (vit_b_16, vit_l_16 ...) state_dict -> configs/vit_b_16.yaml",
    "hf_gpt2": "Hugging Face GPT-2 (GPT2Model or GPT2LMHeadModel, Conv1D weights) -> configs/gpt2.yaml",
    "hf_llama": "Hugging Face Llama (LlamaForCausalLM, separate q/k/v) -> configs/llama2-70b.yaml, llama_tiny.yaml",
    "hf_bert": "Hugging Face BERT (BertModel, or bert.* of BertForPreTraining/MaskedLM) -> configs/bert_base.yaml",
}
"""The key maps netcfg ships: name -> what it maps. Each is netcfg/spec/keymaps/NAME.yaml."""

KEYMAP_DIR = Path(__file__).with_name("keymaps")


def keymap_file(name: str) -> Path:
    if name not in KEYMAPS:  # the registry is closed: a name never becomes a path of the user's choosing
        raise KeyError(name)
    return KEYMAP_DIR / f"{name}.yaml"


@functools.cache
def shipped(name: str) -> KeyRules:
    """The rules of a shipped key map (validated; a broken shipped file is netcfg's bug, raised)."""
    path = keymap_file(name)
    doc = read_yaml(path.read_text(encoding="utf-8"), str(path))
    problems, rules = pydantic_problems(KeyRules, doc.data, doc.loc)
    if problems:
        raise SpecError(problems)
    return rules
