"""The built-in catalogue and the spec schema, answered from a stamped cache. No torch.

`netcfg layers` and `netcfg schema` need neither torch nor pydantic when this cache is warm:
creating the ~60 declaration models and their JSON Schemas takes a third of a second. The
cache is generated from the declarations themselves, never written by hand, and its name
carries a stamp of everything that changes its content: netcfg's version, pydantic's and
pydantic-core's versions, and the source of the declarations and of the spec models. A
different stamp is a different file, so a stale cache is never read; an unreadable or
unwritable cache directory only costs the third of a second.

The cache lives in $NETCFG_CACHE_DIR, else $XDG_CACHE_HOME/netcfg, else ~/.cache/netcfg.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

from netcfg.io.output import write_text_atomic
from netcfg.io.temporaries import cache_dir
from netcfg.version import __version__

_PACKAGE = Path(__file__).resolve().parent.parent
# Every source whose change can change the answers: the declarations, the spec models, the schema.
_SOURCES = ("catalogue", "spec/model.py", "spec/schema.py")


def layers() -> list[SimpleNamespace]:
    """The built-in layer types (attributes of netcfg.catalogue.describe.LayerInfo)."""
    return _infos(_cached()["layers"])


def _infos(rows: list[dict]) -> list[SimpleNamespace]:
    return [SimpleNamespace(**{**info, "args": [SimpleNamespace(**a) for a in info["args"]]}) for info in rows]


def initializers() -> list[SimpleNamespace]:
    """The initializers init rules can name, documented like layer types."""
    return _infos(_cached()["initializers"])


def json_schema() -> dict:
    """The JSON Schema of spec files over the built-in layer types."""
    return _cached()["schema"]


def fresh() -> dict:
    """The cache's content computed from the declarations (imports pydantic, not torch)."""
    from netcfg.catalogue.describe import layers as live_layers
    from netcfg.spec.schema import initializers as live_initializers
    from netcfg.spec.schema import json_schema as live_schema

    return {
        "stamp": stamp(),
        "layers": [asdict(info) for info in live_layers()],
        "initializers": [asdict(info) for info in live_initializers()],
        "schema": live_schema(),
    }


def stamp() -> str:
    digest = hashlib.sha256()
    for name in ("pydantic", "pydantic-core"):
        digest.update(f"{name}={_version(name)};".encode())
    digest.update(f"netcfg={__version__};".encode())
    for source in _source_files():
        digest.update(source.relative_to(_PACKAGE).as_posix().encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()[:20]


def cache_path() -> Path:
    return cache_dir() / f"catalogue-{stamp()}.json"


def _cached() -> dict:
    path = cache_path()
    try:
        data = json.loads(path.read_text())
        if data.get("stamp") == path.stem.removeprefix("catalogue-"):
            return data
    except (OSError, ValueError, AttributeError):
        pass  # absent, unreadable or damaged: computed again below
    data = fresh()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(data) + "\n")
    except OSError:
        pass  # a read-only home: answer without caching
    return data


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def _source_files() -> list[Path]:
    files = []
    for source in _SOURCES:
        path = _PACKAGE / source
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files
