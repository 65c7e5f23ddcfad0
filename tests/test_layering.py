"""The package's layering contract (pyproject.toml [tool.importlinter]) holds: every stage imports
only the stages below it, no module cycles, and spec/catalogue never import torch."""

import shutil
import subprocess

from tests.conftest import ROOT


def test_import_contracts_are_kept():
    lint = shutil.which("lint-imports")
    assert lint, "import-linter is a dev dependency: pip install -e '.[dev]'"
    result = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "3 kept, 0 broken" in result.stdout
