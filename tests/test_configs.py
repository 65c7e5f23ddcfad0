"""Every spec under configs/ validates, builds and runs (big ones are counted on meta only)."""

import re
import shlex

import pytest
from typer.testing import CliRunner

from netcfg.building.builder import build_spec
from netcfg.cli.app import app
from netcfg.spec.loader import load_spec
from tests.conftest import CONFIGS, ROOT

SPECS = sorted(CONFIGS.rglob("*.yaml"))
REAL_LIMIT = 200_000_000  # parameters; above it a spec is built on the meta device only


def extra_args(path):
    """Command-line arguments a spec declares it needs (`# netcfg-test-args: --plugin X`)."""
    match = re.search(r"^# netcfg-test-args: (.*)$", path.read_text(), re.MULTILINE)
    return shlex.split(match.group(1)) if match else []


def test_configs_are_found():
    names = {p.relative_to(CONFIGS).as_posix() for p in SPECS}
    assert {"mlp.yaml", "resnet18.yaml", "resnet152.yaml", "gpt2.yaml"} <= names
    assert len(names) >= 20


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_config_validates_builds_and_runs(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    args = extra_args(path)
    runner = CliRunner()
    result = runner.invoke(app, ["validate", str(path), *args])
    assert result.exit_code == 0, result.output
    if "--plugin" in args:
        from netcfg.building import plugins

        plugins.load([args[args.index("--plugin") + 1]])
    meta = build_spec(load_spec(path), device="meta")
    if sum(p.numel() for p in meta.model.parameters()) > REAL_LIMIT:
        pytest.skip("too large to allocate in tests; counted on the meta device")
    result = runner.invoke(app, ["run", str(path), "--device", "cpu", *args])
    assert result.exit_code == 0, result.output
    assert re.search(r"^checksum [0-9a-f]{16}$", result.output, re.MULTILINE)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_config_inspects(path, monkeypatch):
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(app, ["inspect", str(path), "--layers", "--params", "--init", *extra_args(path)])
    assert result.exit_code == 0, result.output
    assert re.search(r"^parameters +[0-9,]+", result.output, re.MULTILINE)
