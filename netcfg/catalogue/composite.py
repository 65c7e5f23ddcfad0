"""Composition: nodes that hold other nodes (their shapes come from their children)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from netcfg.catalogue.base import Dim, Node


class Sequential(Node):
    """Runs `layers` in order, each on the previous output (torch.nn.Sequential)."""

    type: Literal["sequential"]
    layers: list[Any] = Field(min_length=1)
    """Module nodes, in order."""


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
    """Named nodes, each reading named earlier outputs ('input' is the graph's input)."""

    type: Literal["graph"]
    nodes: dict[str, Any] = Field(min_length=1)
    """Mapping from node name to module node; a node reads the previous node unless `inputs` says otherwise."""
    output: str | None = None
    """Node whose output the graph returns; default: the last node."""


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
