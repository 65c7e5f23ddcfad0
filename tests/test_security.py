"""A config never runs code: checks over the package source and over hostile specs."""

import re
import subprocess
import sys

import pytest

from netcfg.errors import SpecError
from netcfg.spec.loader import load_spec
from tests.conftest import ROOT

PACKAGE = ROOT / "netcfg"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def lines_matching(pattern: str):
    regex = re.compile(pattern)
    return [
        f"{path.relative_to(ROOT)}:{i}"
        for path in SOURCES
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if regex.search(line) and not line.lstrip().startswith("#")
    ]


def test_no_unsafe_yaml_loader():
    assert lines_matching(r"yaml\.(load|load_all|unsafe_load|full_load)\(|yaml\.(Full|Unsafe)?Loader\b") == []


def test_no_eval_exec_pickle_or_torch_load():
    calls = r"(?<![.\w])(eval|exec|compile)\("
    assert lines_matching(calls + r"|\bimport pickle\b|\bpickle\.|torch\.load\(|__import__") == []


def test_importlib_only_in_the_plugin_loader():
    # importlib.metadata reads installed versions (the catalogue cache's stamp): it imports no code
    users = {hit.split(":")[0] for hit in lines_matching(r"\bimportlib\b(?!\.metadata\b| import metadata\b)")}
    assert users == {"netcfg/building/plugins.py"}


@pytest.mark.parametrize(
    "kind",
    ["os.system", "builtins.eval", "torch.hub.load", "torch.nn.functional.importlib", "__import__", "subprocess.Popen"],
)
def test_layer_types_that_name_code_are_refused(write_spec, kind):
    path = write_spec(f"netcfg: 1\ninput: {{shape: [1, 2]}}\nmodel: {{type: {kind}}}\n")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    (diagnostic,) = err.value.diagnostics
    assert diagnostic.message.startswith(f"unknown layer type '{kind}'")


def test_expressions_cannot_reach_code(write_spec, tmp_path):
    canary = tmp_path / "canary"
    text = f"netcfg: 1\ninput: {{shape: [1, 2]}}\nmodel: {{type: linear, out_features: \"${{__import__('os').system('touch {canary}')}}\"}}\n"  # noqa: E501
    with pytest.raises(SpecError, match="is not allowed"):
        load_spec(write_spec(text))
    assert not canary.exists()


def test_cli_start_and_catalogue_do_not_import_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from netcfg.cli.app import app\n"
        "for args in (['--help'], ['layers'], ['layers', 'attention'], ['schema']):\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    assert result.exit_code == 0, result.output\n"
        "import netcfg.spec.loader\n"
        "netcfg.spec.loader.load_spec('configs/mlp.yaml')\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
