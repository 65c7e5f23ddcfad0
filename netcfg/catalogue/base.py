"""What every layer declaration has: the node fields, the argument types, and the rules.

A layer type is declared once, as a pydantic model (its arguments: validation, docs, JSON
Schema) whose methods are its rules, all computed from the arguments and the input shapes
without torch:

- ``out_shape(shapes)``: the output shape, raising ShapeError for an input it cannot take;
- ``out_dtype(dtypes)``: the output dtype name (None: the inputs' promoted dtype);
- ``elements(shapes)``: parameter and buffer elements, counted before anything is allocated;
- ``flops(shapes, out)``: floating-point operations, with torch.utils.flop_counter's
  conventions (a multiply-add is 2 FLOPs; only matrix products, convolutions and attention
  count);
- ``workspace(shapes, out, itemsize)``: bytes of the temporaries PyTorch allocates inside the
  layer's forward pass besides its output (attention's scores, a convolution's reordered
  copies), for the memory plan of a forward pass (netcfg/building/memplan.py); and the flag
  ``aliases``: the output may be a view of the input (no new memory; the input's stays alive).

The base class answers None to all of them: "unknown". That is what a plugin's model
inherits, and the builder then falls back to running the layer on the meta device (the memory
plan assumes a workspace of twice the input and output); every built-in declares the first
four (a test walks the registry) and inherits a workspace of 0 from `Layer` unless it declares
one. The torch build function of each type lives in the mirror module under netcfg/building/layers/.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr

from netcfg.catalogue.shapes import ShapeError

Pos = Annotated[int, Field(ge=1, le=2**31 - 1)]
Dim = Annotated[int, Field(ge=-8, le=8)]
NonNeg = Annotated[int, Field(ge=0, le=2**31 - 1)]
IntOrPair = Pos | list[Pos]
Prob = Annotated[float, Field(ge=0.0, lt=1.0)]
Index = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]

Shape = tuple[int, ...]

# The dtype layers are constructed in (the model is cast to the spec's dtype afterwards).
BUILD_DTYPE = "float32"


def is_float(dtype: str) -> bool:
    return dtype.startswith("float") or dtype == "bfloat16"


def _hint(dtype: str) -> str:
    """What goes before a layer that takes real numbers, for an input of `dtype`."""
    if dtype.startswith("complex"):
        return " (take its magnitudes or its real and imaginary parts first: fourier's output: abs or real_imag)"
    return " (token ids go through an embedding)"


def module_name_problem(name: str) -> str:
    """What keeps `name` from naming a module ('' when nothing): PyTorch's add_module takes any
    string but an empty one or one with a '.' (the separator of paths); invisible characters are
    refused too, so that every name prints as it is."""
    if not name:
        return "a module name cannot be empty"
    if "." in name:
        return "a module name has no '.' (it separates the names of a path)"
    if not name.isprintable():
        return "a module name has no invisible characters (line breaks, controls)"
    return ""


def _module_name(name: str | None) -> str | None:
    problem = module_name_problem(name) if name is not None else ""
    if problem:
        raise ValueError(problem)
    return name


class Node(BaseModel):
    """Fields every module node has."""

    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, use_attribute_docstrings=True, defer_build=True, allow_inf_nan=False
    )

    type: str
    name: Annotated[str | None, AfterValidator(_module_name)] = Field(None, json_schema_extra={"pattern": r"^[^.]+$"})
    """Attribute name of this module inside its parent (default: its position, as in nn.Sequential):
    any name PyTorch takes (not empty, no '.'), such as torchvision's `block1-0`."""
    inputs: str | list[str] | None = None
    """Graph nodes only: names of the earlier nodes (or 'input') this node reads; default: the previous node."""
    trainable: bool = True
    """false freezes every parameter of this module (requires_grad=False)."""

    _path: tuple = PrivateAttr(())
    _deferred: tuple = PrivateAttr(())
    """Arguments holding a `${...}` that reads the incoming shape (in_channels ...): the builder
    computes them just before building the layer (netcfg/building/computed.py)."""
    _computed: dict = PrivateAttr(default_factory=dict)
    """On the node as built: argument -> the `${...}` its value was computed from."""

    float_only: ClassVar[bool] = False
    """Refuses integer inputs (token ids must go through an embedding first)."""
    passes_input: ClassVar[bool] = False
    """Its output is its input, element for element, or a function of each element alone (the
    builder then lets the sample input's identity through, for an embedding's id-range check)."""
    aliases: ClassVar[bool] = False
    """The output may be a view of the input (reshape, select, ...) or the input itself: it takes
    no memory of its own (at most a copy of its size while the layer runs) and keeps the input's
    memory alive as long as it lives."""

    def input_roles(self) -> tuple[str, ...]:
        """What each input of a layer is, in the order `inputs` lists them; the builder refuses
        another number of inputs. One input, unless the arguments ask for more (attention's mask,
        cross-attention's keys and values). Merges and composites are not asked."""
        return ("input",)

    def out_shape(self, shapes: list[Shape]) -> Shape | None:
        """Output shape for these input shapes; None: unknown (the builder runs the layer on meta)."""
        return None

    def out_dtype(self, dtypes: list[str]) -> str | None:
        """Output dtype name; None: the inputs' promoted dtype."""
        if self.float_only and not is_float(dtypes[0]):
            raise ShapeError(f"{self.type} needs a floating-point input, its input is {dtypes[0]}{_hint(dtypes[0])}")
        return None

    def elements(self, shapes: list[Shape]) -> int | None:
        """Parameter and buffer elements; None: unknown (the builder counts a meta copy)."""
        return None

    def flops(self, shapes: list[Shape], out: Shape) -> int | None:
        """FLOPs for these shapes; None: unknown (inspect runs FlopCounterMode)."""
        return None

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int | None:
        """Bytes of the temporaries the forward pass allocates besides the output, at most, for
        inputs of these shapes whose floating-point values take `itemsize` bytes each (the model's
        dtype); None: unknown (the memory plan assumes twice the size of the input and the output)."""
        return None


class Layer(Node):
    """A built-in leaf layer: declares every rule (a test checks that each one overrides them);
    its workspace is 0 unless it declares one."""

    def workspace(self, shapes: list[Shape], out: Shape, itemsize: int) -> int:
        return 0


class Elementwise(Layer):
    """Acts element by element (or normalizes without parameters): same shape, no parameters,
    no FLOPs counted, floating-point inputs only."""

    float_only: ClassVar[bool] = True
    passes_input = True

    def out_shape(self, shapes: list[Shape]) -> Shape:
        return shapes[0]

    def elements(self, shapes: list[Shape]) -> int:
        return 0

    def flops(self, shapes: list[Shape], out: Shape) -> int:
        return 0


class Rearrange(Layer):
    """Moves, picks or copies values: no parameters, no FLOPs; any dtype."""

    def elements(self, shapes: list[Shape]) -> int:
        return 0

    def flops(self, shapes: list[Shape], out: Shape) -> int:
        return 0


# A PyTorch scalar made from a Python number, per-row statistics and other small temporaries.
SMALL = 64


def widened(itemsize: int) -> int:
    """Bytes per element of a float computed as float32 when it is 16-bit (PyTorch's CPU kernels
    widen bfloat16 and float16 for matrix products, convolutions and reductions)."""
    return max(itemsize, 4)


def prod(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


def matmul_flops(in_shape: Shape, out_features: int) -> int:
    """A product of every vector along the last dimension with an [in, out_features] matrix."""
    return 2 * prod(in_shape) * out_features


def last(shape: Shape) -> int:
    return int(shape[-1]) if shape else 0


def channels(shape: Shape) -> int:
    return int(shape[1]) if len(shape) > 1 else 0


def pair(value: int | list[int], rank: int) -> tuple[int, ...]:
    return (value,) * rank if isinstance(value, int) else tuple(value)
