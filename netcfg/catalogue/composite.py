"""Composition: nodes that hold other nodes (their shapes come from their children)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from netcfg.catalogue.base import Dim, Node

ExtraInputs = Literal["first_layer", "every_layer"]


class Sequential(Node):
    """Runs `layers` in order, each on the previous output (torch.nn.Sequential)."""

    type: Literal["sequential"]
    layers: list[Any] = Field(min_length=1)
    """Module nodes, in order."""
    extra_inputs: ExtraInputs = "first_layer"
    """Given several inputs (in a graph): the first layer reads them all, or with `every_layer`
    each layer reads the previous one's output followed by the inputs after the first (an
    attention mask or an encoder's output passed to every layer of a stack)."""


class Parallel(Node):
    """Runs every branch on the same input and merges their outputs."""

    type: Literal["parallel"]
    branches: list[Any] = Field(min_length=1)
    """Module nodes run side by side."""
    merge: Literal["concat", "add", "mul", "stack"] = "concat"
    """How branch outputs are combined."""
    dim: Dim = -1
    """Dimension for concat and stack."""


class Residual(Node):
    """body(x) + shortcut(x); shortcut defaults to the identity."""

    type: Literal["residual"]
    body: Any
    """Main path."""
    shortcut: Any = None
    """Projection path (for example a strided 1x1 conv); default: identity."""


class Graph(Node):
    """Named nodes, each reading named earlier outputs or the graph's inputs ('input' when it has one)."""

    type: Literal["graph"]
    nodes: dict[str, Any] = Field(min_length=1)
    """Mapping from node name to module node; a node reads the previous node unless `inputs` says otherwise."""
    output: str | list[str] | dict[str, str] | None = None
    """Node whose output the graph returns (default: the last node); at the model's top, a list of
    nodes (the model returns a tuple) or a mapping name -> node (a dict)."""
    input_names: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] | None = Field(None, min_length=1)
    """Names of the graph's inputs, in order; default: 'input' for one input, the names in its own
    `inputs:` for several (distinct) ones, the spec's input names for the model's top graph."""

    def input_list(self) -> list[str]:
        """The names its nodes call its inputs: `input_names`; else, for a graph reading several
        distinct earlier nodes (`inputs: [hidden, mask]`), their names; else 'input'."""
        if self.input_names:
            return self.input_names
        if isinstance(self.inputs, list) and len(self.inputs) > 1 and len(set(self.inputs)) == len(self.inputs):
            return list(self.inputs)
        return ["input"]

    def output_nodes(self) -> list[str]:
        """The nodes whose outputs the graph returns, in order."""
        if self.output is None:
            return [next(reversed(self.nodes))]
        if isinstance(self.output, str):
            return [self.output]
        return list(self.output.values()) if isinstance(self.output, dict) else list(self.output)

    def plan(self) -> tuple[list[list[int]], list[int]]:
        """(steps, outputs): node i reads the values at steps[i], the graph returns the values at
        `outputs`; values are numbered inputs first, then node i as len(inputs) + i. Every
        reference must be known (the builder checks them first)."""
        index = {name: i for i, name in enumerate(self.input_list())}
        steps = []
        previous = self.input_list()[0]
        for name, node in self.nodes.items():
            refs = [node.inputs] if isinstance(node.inputs, str) else (node.inputs or [previous])
            steps.append([index[r] for r in refs])
            index[name] = len(index)
            previous = name
        return steps, [index[o] for o in self.output_nodes()]


class Shared(Node):
    """Uses the module defined under the top-level `shared:` key; every use is the same module."""

    type: Literal["shared"]
    ref: str
    """Name under the top-level `shared:` mapping."""


class Repeat(Node):
    """N independent copies of `body` in sequence (an nn.Sequential named 0..N-1), or side by side
    with `merge` (a parallel node)."""

    type: Literal["repeat"]
    times: Annotated[int, Field(ge=1, le=10_000)]
    """Number of copies."""
    index: str = Field("index", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Name under which ${...} expressions in the body see the copy number (0-based)."""
    body: Any
    """The module node to copy."""
    merge: Literal["concat", "add", "mul", "stack"] | None = None
    """Run the copies side by side on the same input and combine their outputs so (default: in sequence)."""
    extra_inputs: ExtraInputs = "first_layer"
    """In sequence, given several inputs: the first copy reads them all, or with `every_layer`
    each copy reads the previous one's output followed by the inputs after the first (a layer
    stack's attention mask, a decoder's encoder output)."""
    dim: Dim = -1
    """With merge: the dimension for concat and stack."""


class Block(Node):
    """An instance of a template from the top-level `blocks:` mapping."""

    type: Literal["block"]
    block: str
    """Template name."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Values for the template's arguments."""


# Fields of composite nodes that hold child module nodes, and their shape.
CHILD_FIELDS: dict[str, dict[str, str]] = {
    "sequential": {"layers": "list"},
    "parallel": {"branches": "list"},
    "residual": {"body": "one", "shortcut": "one"},
    "graph": {"nodes": "map"},
    "repeat": {"body": "one"},
}
