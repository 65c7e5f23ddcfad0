"""netcfg: neural networks described as YAML data, built into PyTorch modules.

Public API::

    spec = netcfg.load_spec("configs/mlp.yaml", overrides=["seed=1"])
    model = netcfg.build(spec, device="cpu")
    ...                                   # train it
    netcfg.save(model, "mlp.safetensors")  # weights and spec, atomically
    model = netcfg.load("mlp.safetensors")

Names are imported on first use, so `import netcfg` (and the CLI's --help) stays fast
and torch is imported only by what builds or runs a model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from netcfg.api import build, load, load_into, save
    from netcfg.catalogue.base import Node
    from netcfg.catalogue.registry import register_layer
    from netcfg.errors import BuildError, CheckpointError, DeviceError, InputError, NetcfgError, PluginError, SpecError
    from netcfg.spec.loader import load_spec, load_spec_data
    from netcfg.spec.model import Spec

from netcfg.version import __version__

_EXPORTS = {
    "build": "netcfg.api",
    "save": "netcfg.api",
    "load": "netcfg.api",
    "load_into": "netcfg.api",
    "Node": "netcfg.catalogue.base",
    "BuildError": "netcfg.errors",
    "CheckpointError": "netcfg.errors",
    "DeviceError": "netcfg.errors",
    "InputError": "netcfg.errors",
    "NetcfgError": "netcfg.errors",
    "PluginError": "netcfg.errors",
    "SpecError": "netcfg.errors",
    "load_spec": "netcfg.spec.loader",
    "load_spec_data": "netcfg.spec.loader",
    "register_layer": "netcfg.catalogue.registry",
    "Spec": "netcfg.spec.model",
}

__all__ = [
    "BuildError",
    "CheckpointError",
    "DeviceError",
    "InputError",
    "NetcfgError",
    "Node",
    "PluginError",
    "Spec",
    "SpecError",
    "__version__",
    "build",
    "load",
    "load_into",
    "load_spec",
    "load_spec_data",
    "register_layer",
    "save",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'netcfg' has no attribute '{name}'")
    return vars(_import(module))[name]


def _import(module: str) -> Any:
    # Plain import statements over the fixed table above: no dynamic import machinery.
    if module == "netcfg.api":
        from netcfg import api as found
    elif module == "netcfg.catalogue.base":
        from netcfg.catalogue import base as found
    elif module == "netcfg.errors":
        from netcfg import errors as found
    elif module == "netcfg.spec.loader":
        from netcfg.spec import loader as found
    elif module == "netcfg.catalogue.registry":
        from netcfg.catalogue import registry as found
    else:
        from netcfg.spec import model as found
    return found
