"""User plugins: Python modules that register layer types with @netcfg.register_layer.

This is the one trust boundary of netcfg: a plugin is code, so it runs only when the
user names it on the command line (--plugin MODULE or --plugin path/to/file.py) or
has installed a package that declares a `netcfg.plugins` entry point. Nothing in a
spec file can cause a plugin to load.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path

from netcfg.errors import Loc, PluginError

_loaded: set[str] = set()


def load(names: list[str] | tuple[str, ...], installed: bool = True) -> None:
    """Import each named plugin once, then the installed entry-point plugins."""
    for name in names:
        if name not in _loaded:
            _import(name)
            _loaded.add(name)
    if installed:
        for ep in entry_points(group="netcfg.plugins"):
            if ep.value not in _loaded:
                _loaded.add(ep.value)
                _guard(ep.value, ep.load)


def _import(name: str) -> None:
    path = Path(name)
    if name.endswith(".py"):
        try:
            found = path.is_file()
        except (OSError, ValueError) as exc:  # a name too long, a NUL: the API has no CLI path check
            reason = getattr(exc, "strerror", None) or exc
            raise PluginError(f"cannot read: {reason}", Loc(f"--plugin {name}")) from None
        if not found:
            raise PluginError("plugin file not found", Loc(f"--plugin {name}"))
        spec = importlib.util.spec_from_file_location(f"netcfg_plugin_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        _guard(name, lambda: spec.loader.exec_module(module))
    elif "/" in name or "\\" in name or path.suffix:
        raise PluginError("a plugin is a module name (my_layers) or a .py file", Loc(f"--plugin {name}"))
    else:
        _guard(name, lambda: importlib.import_module(name))


def _guard(name: str, action) -> None:
    try:
        action()
    except PluginError as exc:
        raise PluginError(f"plugin '{name}': {exc.diagnostics[0].message}", Loc(f"--plugin {name}")) from exc
    except ImportError as exc:
        raise PluginError(f"cannot import plugin: {exc}", Loc(f"--plugin {name}")) from exc
    except Exception as exc:  # a plugin is user code: any failure is the user's to see
        raise PluginError(f"plugin failed while loading: {type(exc).__name__}: {exc}", Loc(f"--plugin {name}")) from exc
