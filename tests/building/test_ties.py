"""Ties are checked in time linear in their paths (netcfg/building/ties.py)."""

from __future__ import annotations

import time

import pytest

from netcfg.building.builder import build_spec
from netcfg.errors import BuildError
from netcfg.spec.loader import load_spec_data


def tied(paths: list[str]):
    model = {"type": "sequential", "layers": [{"type": "linear", "out_features": 4}]}
    return load_spec_data({"netcfg": 1, "input": {"shape": [2, 20]}, "model": model, "ties": [paths]}, "spec")


def test_a_tie_of_110_000_missing_paths_lists_20_and_counts_the_rest():
    """It took minutes: a search of the earlier paths, and a did-you-mean, per path."""
    spec = tied(["0.weight"] + [f"layers.{i}.weight" for i in range(110_000)])
    start = time.perf_counter()
    with pytest.raises(BuildError) as err:
        build_spec(spec, device="meta")
    assert time.perf_counter() - start < 5
    lines = [d.message for d in err.value.diagnostics]
    assert lines[0] == "tie: no parameter 'layers.0.weight' in the model; did you mean '0.weight'?"
    assert [line.split(" in the model")[0] for line in lines[1:20]] == [
        f"tie: no parameter 'layers.{i}.weight'" for i in range(1, 20)
    ]
    assert lines[20:] == ["tie: ... and 109,980 more paths not in the model"]


def test_a_path_listed_many_times_is_found_with_a_set():
    spec = tied(["0.weight"] * 20_000)
    start = time.perf_counter()
    with pytest.raises(BuildError) as err:
        build_spec(spec, device="meta")
    assert time.perf_counter() - start < 5
    assert err.value.diagnostics[0].message == "tie: '0.weight' is listed twice in one tie"
