from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"

if str(ROOT) not in sys.path:  # so tests can `from benchmarks.twins import ...`
    sys.path.insert(0, str(ROOT))

# The catalogue cache of `netcfg layers` and `schema` goes to a fresh folder, not the user's
# ~/.cache (subprocesses inherit it too).
os.environ["NETCFG_CACHE_DIR"] = tempfile.mkdtemp(prefix="netcfg-test-cache-")


@pytest.fixture
def write_spec(tmp_path):
    """Write a spec text to a file and return its path."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture(autouse=True)
def isolated_registry():
    """Plugins a test loads register layer types globally: forget them after the test."""
    from netcfg.building import plugins
    from netcfg.catalogue.registry import REGISTRY

    entries, loaded = dict(REGISTRY.entries), set(plugins._loaded)
    yield
    REGISTRY.entries.clear()
    REGISTRY.entries.update(entries)
    plugins._loaded.clear()
    plugins._loaded.update(loaded)
