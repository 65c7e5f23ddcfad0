"""The catalogue cache's contract: generated from the declarations, named by a stamp of what
changes them, never read when stale or damaged, optional when the folder is not writable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict

import pytest

from netcfg.actions import catalogue
from netcfg.catalogue.describe import layers as live_layers
from netcfg.spec.schema import json_schema as live_schema
from tests.conftest import ROOT


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NETCFG_CACHE_DIR", str(tmp_path))
    return tmp_path


def _plain(infos) -> list[dict]:
    return [{**vars(i), "args": [vars(a) for a in i.args]} for i in infos]


def test_cold_and_warm_answers_equal_the_declarations(cache_dir):
    live = [asdict(i) for i in live_layers()]
    assert _plain(catalogue.layers()) == live  # cold: computed and written
    assert list(cache_dir.glob("catalogue-*.json")) == [catalogue.cache_path()]
    assert _plain(catalogue.layers()) == live  # warm: read back
    assert catalogue.json_schema() == live_schema()


def test_another_pydantic_version_is_another_cache(cache_dir, monkeypatch):
    first = catalogue.cache_path()
    real = catalogue._version
    monkeypatch.setattr(catalogue, "_version", lambda name: "2.7.0" if name == "pydantic" else real(name))
    assert catalogue.cache_path() != first


def test_a_damaged_or_foreign_cache_is_recomputed(cache_dir):
    path = catalogue.cache_path()
    path.write_text("{not json")
    assert catalogue.json_schema() == live_schema()
    path.write_text(json.dumps({"stamp": "other", "layers": [], "schema": {}}))
    assert catalogue.json_schema() == live_schema()
    assert json.loads(path.read_text())["stamp"] == catalogue.stamp()  # rewritten


def test_an_unwritable_cache_folder_still_answers(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("NETCFG_CACHE_DIR", str(blocker / "cache"))  # mkdir fails: a file is in the way
    assert [i.name for i in catalogue.layers()] == [i.name for i in live_layers()]


def test_a_cache_folder_with_a_name_at_the_limit_is_written_and_one_past_it_still_answers(tmp_path, monkeypatch):
    """Whatever the cache folder's name, `layers` answers: cached when the system takes the name."""
    long = tmp_path / ("c" * 250)
    monkeypatch.setenv("NETCFG_CACHE_DIR", str(long))
    assert [i.name for i in catalogue.layers()] == [i.name for i in live_layers()]
    assert [p.name for p in long.iterdir() if p.is_file()] == [catalogue.cache_path().name]
    monkeypatch.setenv("NETCFG_CACHE_DIR", str(tmp_path / ("c" * 256)))  # the system refuses the name
    assert [i.name for i in catalogue.layers()] == [i.name for i in live_layers()]


def test_write_text_atomic_fits_its_temporary_name_under_name_max(tmp_path):
    """A temporary name once was the target's name plus a suffix: past NAME_MAX for a target of 250 bytes."""
    from netcfg.io.output import write_text_atomic

    for name in ("t" * 255, "€" * 85):  # 255 bytes each; the second is cut inside a character
        write_text_atomic(tmp_path / name, "x")
        assert (tmp_path / name).read_text() == "x"
    assert len(os.listdir(tmp_path)) == 2
    with pytest.raises(OSError, match="File name too long"):  # the target itself: the caller's to report
        write_text_atomic(tmp_path / ("t" * 256), "x")
    assert len(os.listdir(tmp_path)) == 2


def test_a_warm_cache_needs_neither_pydantic_nor_torch(cache_dir):
    catalogue.layers()
    code = (
        "import sys\nfrom netcfg.actions.catalogue import layers, json_schema\nlayers(); json_schema()\n"
        "print(sorted(m for m in ('pydantic', 'torch') if m in sys.modules))"
    )
    env = {"NETCFG_CACHE_DIR": str(cache_dir), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
