"""The built-in catalogue as plain data, read from builtin_catalogue.json (no pydantic, no torch).

Written by `python -m netcfg.catalogue.describe` from the pydantic models; a test keeps it
equal to them. Used by `netcfg layers` and `netcfg schema` when no plugin is named.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

CACHE = Path(__file__).resolve().parent / "builtin_catalogue.json"


def _read() -> dict:
    return json.loads(CACHE.read_text())


def layers() -> list[SimpleNamespace]:
    """Layer infos with the attributes of actions.catalogue.LayerInfo."""
    out = []
    for info in _read()["layers"]:
        args = [SimpleNamespace(**a) for a in info.pop("args")]
        out.append(SimpleNamespace(**info, args=args))
    return out


def json_schema() -> dict:
    return _read()["schema"]
