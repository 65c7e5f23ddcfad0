"""A model that fails while it runs: PyTorch's exception as one NetcfgError naming the layer.

A spec can be valid and still fail on a device: float16 FFT is not implemented on the CPU,
an integer input reaches an elementwise float layer through a plugin, CUDA runs out of
memory. PyTorch raises RuntimeError (or ValueError, NotImplementedError ...) from deep
inside the forward pass; this module finds the innermost layer that was running (forward
hooks on every module, for one pass) and says which, where the spec defines it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn

from netcfg.building.builder import Built
from netcfg.errors import BuildError, Loc

TORCH_FAILURES = (RuntimeError, ValueError, TypeError, IndexError, NotImplementedError)
"""What PyTorch raises when a tensor operation cannot be done (torch.OutOfMemoryError,
NotImplementedError and torch.compile's errors are RuntimeErrors or below)."""


class Tracker:
    """The module paths whose forward has begun and not ended, outermost first."""

    def __init__(self, model: nn.Module):
        self.names = {id(m): path for path, m in model.named_modules()}
        self.running: list[str] = []
        self.failed: str | None = None
        """The innermost running module's path when the pass raised (None: no module had begun)."""

    def enter(self, module: nn.Module, args) -> None:
        self.running.append(self.names.get(id(module), ""))

    def leave(self, module: nn.Module, args, output) -> None:
        if self.running:
            self.running.pop()


@contextlib.contextmanager
def tracking(model: nn.Module) -> Iterator[Tracker]:
    """Run a pass inside this to learn which layer raised (tracker.failed)."""
    tracker = Tracker(model)
    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(tracker.enter))
        handles.append(module.register_forward_hook(tracker.leave))
    try:
        yield tracker
    except BaseException:
        tracker.failed = tracker.running[-1] if tracker.running else None
        raise
    finally:
        for handle in handles:
            handle.remove()


def first_line(exc: BaseException) -> str:
    """PyTorch's message, first line only (the rest is a C++ trace or advice about flags)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def layer_failure(built: Built, path: str, exc: BaseException, context: str) -> BuildError:
    """'layer P (type) failed CONTEXT: message', at the place in the spec that defines the layer
    (or the nearest enclosing node the spec wrote, for a module a layer made inside itself)."""
    visit_path = path
    while visit_path not in built.visits and visit_path:
        visit_path = visit_path.rpartition(".")[0]
    visit = built.visits.get(visit_path)
    kind = f" ({visit.type})" if visit is not None else ""
    where = visit.loc if visit is not None else built.spec.loc(("model",))
    return BuildError(f"layer '{visit_path or 'model'}'{kind} failed {context}: {first_line(exc)}", where)


def no_layer_failure(exc: BaseException, flag: str, context: str) -> BuildError:
    """A failure before any layer ran (moving the input, entering autocast): the flag's."""
    return BuildError(f"the model could not run {context}: {first_line(exc)}", Loc(flag))
