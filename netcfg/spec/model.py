"""The spec language's top level: pydantic models, no torch.

A spec file is a mapping::

    netcfg: 1                      # format version
    input: {shape: [2, 20]}        # the sample input that drives shape inference
    model: {type: sequential, layers: [...]}

plus optional ``name``, ``description``, ``vars``, ``seed``, ``device``, ``dtype``,
``blocks`` (templates), ``shared`` (modules used in several places), ``ties`` and
``init``. Module nodes (``model``, block bodies, shared modules) are validated node by
node against the registry by :mod:`netcfg.spec.validate` after template expansion.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator
from pydantic_core import PydanticCustomError

from netcfg.catalogue.base import Node
from netcfg.errors import Loc
from netcfg.spec.keymap import KEYMAPS, Rules
from netcfg.spec.train import TrainSpec
from netcfg.suggest import suggest

FORMAT_VERSION = 1
DEVICE_PATTERN = r"auto|cpu|meta|mps|cuda(:[0-9]{1,9})?"  # ASCII digits: a regex \d takes any script's digits

FloatDType = Literal["float32", "float16", "bfloat16", "float64"]
InputDType = Literal["float32", "float16", "bfloat16", "float64", "int64", "int32"]
Scalar = Union[bool, int, float, str, None]

# allow_inf_nan=False: no spec number is meaningful as NaN or infinity (an init std, a value range).
_CONFIG = ConfigDict(
    extra="forbid", strict=True, frozen=True, use_attribute_docstrings=True, defer_build=True, allow_inf_nan=False
)


MAX_INPUT_ELEMENTS = 2**40  # 4 TiB of float32: past any device, and safe from size overflows


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):  # one message, not one per branch of the union
        raise PydanticCustomError("finite_number", "Input should be a finite number")
    return value


# int | float: an integer stays the integer written (a float holds integers exactly only up to
# 2**53, and int64 token ids go to 2**63); a float stays a float.
_Bound = Annotated[Union[int, float], BeforeValidator(_finite)]


class InputSpec(BaseModel):
    """The sample input: its shape (batch first), dtype and value range."""

    model_config = _CONFIG

    shape: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(min_length=1, max_length=8)
    """Full shape including the batch dimension, e.g. [2, 20] or [1, 3, 224, 224]."""
    dtype: InputDType = "float32"
    """Element type; integer types are token ids."""
    low: _Bound = 0.0
    """Smallest value (floats: uniform in [low, high); integers: ids in [low, high))."""
    high: Optional[_Bound] = None
    """Upper bound, exclusive; default 1.0 for floats; required for integer inputs."""

    @model_validator(mode="after")
    def _integer_range(self) -> InputSpec:
        elements = 1
        for size in self.shape:
            elements *= size
        if elements > MAX_INPUT_ELEMENTS:
            raise ValueError(f"the input {self.shape} has {elements:,} elements, more than 2**40")
        if self.dtype.startswith("int"):
            _check_id_range(self.dtype, self.low, self.high)
        if self.high is not None and self.high <= self.low:
            raise ValueError("`high` must be greater than `low`")
        largest = _FLOAT_MAX.get(self.dtype)
        high = 1.0 if self.high is None else self.high
        finite = largest is None or max(abs(self.low), abs(high), high - self.low) <= largest
        if not finite:
            raise ValueError(f"`low` and `high` (and their difference) must lie within {self.dtype}'s range "
                             f"(magnitude up to {largest:.4g})")  # fmt: skip
        return self

    @property
    def id_range(self) -> tuple[int, int]:
        """[low, high) of an integer input as exact integers (never through a float)."""
        return int(self.low), int(self.high)


def _check_id_range(dtype: str, low: int | float, high: int | float | None) -> None:
    """Token ids are drawn exactly in [low, high): whole numbers a float holds exactly, within
    the dtype's range (high, exclusive, may be 2**63 for int64: ids up to 2**63-1)."""
    if high is None:
        raise ValueError("integer inputs need `high` (for token ids: the vocabulary size)")
    for name, value in (("low", low), ("high", high)):
        if isinstance(value, float) and not value.is_integer():
            raise ValueError("`low` and `high` of integer inputs must be whole numbers")
        if isinstance(value, float) and abs(value) > 2**53:
            raise ValueError(f"`{name}` of an integer input is {value:.17g}, a float past 2**53 that may not be the "
                             "integer meant: write it as an integer (no decimal point or exponent)")  # fmt: skip
    bits = 31 if dtype == "int32" else 63
    if not -(2**bits) <= low < high <= 2**bits:
        raise ValueError(f"`low` and `high` must lie within {dtype}'s range: ids in [low, high) with "
                         f"-2**{bits} <= low < high <= 2**{bits}")  # fmt: skip


# The largest finite value of each float type (values drawn past it would be infinite).
_FLOAT_MAX = {"float16": 65504.0, "bfloat16": 3.3895e38, "float32": 3.4028e38, "float64": 1.7976e308}


INPUT_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
MAX_INPUTS = 64


def _input_form(value: Any) -> str:
    """`input: {shape: [...]}` is the one unnamed input; a mapping of mappings names several
    (no field of an input spec is a mapping, so one mapping value tells them apart; validated
    inputs are told apart the same way when they are written back)."""
    if isinstance(value, dict) and any(isinstance(v, (dict, InputSpec)) for v in value.values()):
        return "named"
    return "one"


NamedInputs = Annotated[
    dict[Annotated[str, Field(pattern=INPUT_NAME)], InputSpec], Field(min_length=1, max_length=MAX_INPUTS)
]
"""Named inputs, in the order the model's forward takes them."""
Inputs = Annotated[
    Union[Annotated[InputSpec, Tag("one")], Annotated[NamedInputs, Tag("named")]], Discriminator(_input_form)
]


# ---------------------------------------------------------------- initializers


class _Init(BaseModel):
    model_config = _CONFIG


class NormalInit(_Init):
    """Gaussian N(mean, std^2)."""

    kind: Literal["normal"]
    mean: float = 0.0
    std: float = Field(1.0, gt=0)


class UniformInit(_Init):
    """Uniform on [low, high)."""

    kind: Literal["uniform"]
    low: float = 0.0
    high: float = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> UniformInit:
        if not self.high > self.low:
            raise ValueError(f"`high` ({self.high:g}) must be greater than `low` ({self.low:g})")
        return self


class ConstantInit(_Init):
    """Every element equal to `value`."""

    kind: Literal["constant"]
    value: float


class ZerosInit(_Init):
    """All zeros."""

    kind: Literal["zeros"]


class OnesInit(_Init):
    """All ones."""

    kind: Literal["ones"]


class XavierUniformInit(_Init):
    """Glorot uniform, bound gain * sqrt(6 / (fan_in + fan_out))."""

    kind: Literal["xavier_uniform"]
    gain: float = 1.0


class XavierNormalInit(_Init):
    """Glorot normal, std gain * sqrt(2 / (fan_in + fan_out))."""

    kind: Literal["xavier_normal"]
    gain: float = 1.0


class _KaimingInit(_Init):
    a: float = 0.0
    """Negative slope of the rectifier that follows (leaky_relu only)."""
    mode: Literal["fan_in", "fan_out"] = "fan_in"
    nonlinearity: Literal["relu", "leaky_relu", "linear", "tanh", "sigmoid", "selu"] = "leaky_relu"


class KaimingUniformInit(_KaimingInit):
    """He uniform."""

    kind: Literal["kaiming_uniform"]


class KaimingNormalInit(_KaimingInit):
    """He normal."""

    kind: Literal["kaiming_normal"]


class OrthogonalInit(_Init):
    """(Semi-)orthogonal matrix scaled by gain."""

    kind: Literal["orthogonal"]
    gain: float = 1.0


class TruncNormalInit(_Init):
    """N(mean, std^2) redrawn outside [low, high]."""

    kind: Literal["trunc_normal"]
    mean: float = 0.0
    std: float = Field(1.0, gt=0)
    low: float = -2.0
    high: float = 2.0

    @model_validator(mode="after")
    def _ordered(self) -> TruncNormalInit:
        if not self.high > self.low:
            raise ValueError(f"`high` ({self.high:g}) must be greater than `low` ({self.low:g})")
        return self


class MixtureComponent(_Init):
    """One component of a mixture: drawn with probability `p` from `init`."""

    p: float = Field(gt=0, le=1)
    init: Initializer


class MixtureInit(_Init):
    """Each element independently from one component, picked with probability p."""

    kind: Literal["mixture"]
    components: list[MixtureComponent] = Field(min_length=1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> MixtureInit:
        total = sum(c.p for c in self.components)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"mixture probabilities must sum to 1, they sum to {total:g}")
        return self


Initializer = Annotated[
    Union[
        NormalInit, UniformInit, ConstantInit, ZerosInit, OnesInit, XavierUniformInit, XavierNormalInit,
        KaimingUniformInit, KaimingNormalInit, OrthogonalInit, TruncNormalInit, MixtureInit,
    ],
    Field(discriminator="kind"),
]  # fmt: skip
MixtureComponent.model_rebuild()


class InitRule(BaseModel):
    """Initializes the parameters it selects; a later rule overrides an earlier one."""

    model_config = _CONFIG

    params: str | list[str] = "*"
    """Glob(s) on the parameter path as in named_parameters(), e.g. '*.weight' or '0.*'."""
    layers: str | list[str] | None = None
    """Only parameters of these layer types (e.g. linear); default: any."""
    init: Initializer
    """The initializer."""


class PretrainedSource(Rules):
    """Initialize part of this model from a safetensors checkpoint (of this or another architecture).

    Each file key is taken by the first rule that applies: `ignore`, then `rename` (this entry's,
    then the key map's), then the longest matching prefix of `map` (this entry's, then the key map's)."""

    model_config = _CONFIG

    file: str = Field(min_length=1)
    """Checkpoint path, relative to the spec file's directory."""
    keymap: Optional[str] = None
    """A key map netcfg ships (netcfg/spec/keymaps/), e.g. hf_gpt2: its rules follow this entry's own."""
    map: Optional[dict[str, str]] = None  # type: ignore[assignment]
    """Name prefix in the file -> name prefix in this model, e.g. {"0.": "encoder.0."}; the longest
    matching prefix wins and "" takes every other key. Default: same names ({"": ""}), or none when
    `rename` or `keymap` is given."""
    strict: Union[bool, Literal["warn"]] = "warn"
    """Model tensors no entry loads and file tensors no rule takes: warn (one warning each,
    counted), true (one error), false (silent: a partial reuse on purpose)."""
    trainable: bool = True
    """false freezes the parameters loaded from the file."""

    @field_validator("keymap")
    @classmethod
    def _known_keymap(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and value not in KEYMAPS:
            raise ValueError(f"unknown key map '{value}' (one of: {', '.join(KEYMAPS)}){suggest(value, list(KEYMAPS))}")
        return value

    def prefixes(self) -> dict[str, str]:
        """This entry's own prefix rules, the default applied."""
        if self.map is not None:
            return self.map
        return {} if self.rename or self.keymap else {"": ""}


class BlockDef(BaseModel):
    """A template: `args` with defaults (null = required) and a `body` module node."""

    model_config = _CONFIG

    args: dict[str, Scalar] = Field(default_factory=dict)
    """Argument names and default values; null marks a required argument."""
    body: Any
    """Module node; `${name}` expressions see the arguments and the top-level vars."""
    description: str | None = None


class ShardSpec(BaseModel):
    """The units `--strategy fsdp` shards one by one (each gathers its parameters only while it runs)."""

    model_config = _CONFIG

    units: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=lambda: ["repeat", "block"], min_length=1)
    """'repeat' (each repeat copy), 'block' (each template instance), a template's name, a layer type,
    or a module path (globs allowed: transformer.h.*)."""
    checkpoint: bool = False
    """Recompute each unit's activations in the backward pass instead of keeping them (less memory)."""


class SpecHead(BaseModel):
    """The top-level keys of a spec file; module nodes are validated separately."""

    model_config = _CONFIG

    netcfg: int
    """Format version of the spec language (this netcfg reads 1)."""
    name: str | None = None
    description: str | None = None
    vars: dict[str, Scalar] = Field(default_factory=dict)
    """Named values usable as ${name} anywhere, each a value or an expression over the vars above it;
    change them with --set vars.name=value."""
    input: Inputs
    """The sample input ({shape, dtype, low, high}), or a mapping of names to such inputs: the
    model's forward takes them in that order (or by name)."""
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    """Seed of parameter initialization and of the random sample input."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N | mps | meta."""
    dtype: FloatDType = "float32"
    """Floating-point type of parameters and buffers."""
    blocks: dict[str, BlockDef] = Field(default_factory=dict)
    """Named templates, used with {type: block, block: NAME, args: {...}}."""
    shared: dict[str, Any] = Field(default_factory=dict)
    """Named modules used in several places with {type: shared, ref: NAME}: one module, shared parameters."""
    model: Any
    """The network: a module node."""
    ties: list[Annotated[list[str], Field(min_length=2)]] = Field(default_factory=list)
    """Groups of parameter paths made one tensor: the first path's tensor is kept."""
    init: list[InitRule] = Field(default_factory=list)
    """Initializer rules, applied in order after PyTorch's default initialization."""
    pretrained: list[PretrainedSource] = Field(default_factory=list)
    """Checkpoints to initialize parts of the model from, after the init rules."""
    shard: Optional[ShardSpec] = None
    """How --strategy fsdp cuts the model into units (default: each repeat copy and block instance)."""
    train: Optional[TrainSpec] = None
    """A training run for `netcfg train`: data, loss, optimizer, schedule, checkpoints."""

    @property
    def inputs(self) -> dict[str, InputSpec]:
        """The inputs by name, in order; a single unnamed input is named 'input'."""
        return self.input if isinstance(self.input, dict) else {"input": self.input}

    @property
    def named_inputs(self) -> bool:
        """The spec names its inputs (`input:` is a mapping of inputs)."""
        return isinstance(self.input, dict)

    def input_path(self, name: str) -> tuple:
        """The spec path of input `name` (for error locations)."""
        return ("input", name) if self.named_inputs else ("input",)

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not re.fullmatch(DEVICE_PATTERN, value):
            raise ValueError(f"unknown device '{value}' (use auto, cpu, cuda, cuda:N, mps or meta)")
        return value


@dataclass
class Spec:
    """A validated, fully expanded spec."""

    head: SpecHead
    model: Node
    shared: dict[str, Node]
    data: dict
    """The expanded spec as plain data (canonical form; validates to the same Spec)."""
    file: str
    locs: dict[tuple, Loc] = field(default_factory=dict)
    """Location in the source of each path of `data`."""
    dropped: dict[tuple, Loc] = field(default_factory=dict)
    """Graph nodes removed by a false `if` (expanded path -> the `if`'s location)."""
    units: dict[tuple, list[str]] = field(default_factory=dict)
    """Expanded path of each repeat copy and block instance -> 'repeat', or 'block' and the template's name."""

    def loc(self, path: tuple) -> Loc:
        for i in range(len(path), -1, -1):
            found = self.locs.get(tuple(path[:i]))
            if found is not None:
                return found
        return Loc(self.file, 1, 1)
