"""netcfg layers: the initializers beside the layer types, described from netcfg.spec.model."""

import json
import subprocess
import sys
from typing import get_args

from typer.testing import CliRunner

from netcfg.actions import catalogue
from netcfg.cli.app import app
from netcfg.spec import model
from tests.conftest import ROOT


def invoke(*args):
    return CliRunner().invoke(app, list(args))


def test_the_listing_has_an_initializer_section_with_one_line_docs():
    result = invoke("layers")
    assert result.exit_code == 0
    section = result.output.split("\ninitializers (init: {kind: NAME, ...} in an init rule):\n")[1]
    rows = [line.split(None, 1) for line in section.split("\n\n")[0].splitlines()]
    assert rows[0] == ["normal", "Gaussian N(mean, std^2)."]
    assert [name for name, _ in rows] == [
        "normal", "uniform", "constant", "zeros", "ones", "xavier_uniform", "xavier_normal", "kaiming_uniform",
        "kaiming_normal", "orthogonal", "trunc_normal", "mixture",
    ]  # fmt: skip


def test_the_cached_listing_is_what_the_models_say():
    models = get_args(get_args(model.Initializer)[0])
    expected = {get_args(m.model_fields["kind"].annotation)[0]: m.__doc__.strip().splitlines()[0] for m in models}
    assert {i.name: i.doc for i in catalogue.initializers()} == expected


def test_an_initializer_in_detail():
    result = invoke("layers", "kaiming_normal")
    assert result.exit_code == 0
    assert result.output == (
        "kaiming_normal (initializer): He normal.\n\n"
        "  a: float  (default 0.0)\n"
        "      Negative slope of the rectifier that follows (leaky_relu only).\n"
        "  mode: 'fan_in' | 'fan_out'  (default 'fan_in')\n"
        "  nonlinearity: 'relu' | 'leaky_relu' | 'linear' | 'tanh' | 'sigmoid' | 'selu'  (default 'leaky_relu')\n\n"
        "Used in an init rule, e.g. init: [{params: '*.weight', init: {kind: kaiming_normal}}]\n"
    )
    assert "constant (initializer)" in invoke("layers", "constant").output
    assert "  value: float  (required)\n" in invoke("layers", "constant").output
    assert "  (no arguments)\n" in invoke("layers", "zeros").output


def test_an_initializer_as_json_has_the_fields_of_a_layer():
    (mixture,) = json.loads(invoke("layers", "mixture", "--format", "json").output)
    (linear,) = json.loads(invoke("layers", "linear", "--format", "json").output)
    assert mixture.keys() == linear.keys() and mixture["kind"] == "initializer"
    (components,) = mixture["args"]
    assert components.keys() == linear["args"][0].keys()
    assert components["name"] == "components" and components["required"] is True
    assert components["doc"] == "One component of a mixture: drawn with probability `p` from `init`."


def test_the_json_listing_holds_the_initializers_after_the_layers():
    data = json.loads(invoke("layers", "--format", "json").output)
    count = len(catalogue.initializers())
    assert [d["kind"] for d in data[-count:]] == ["initializer"] * count
    assert "initializer" not in [d["kind"] for d in data[:-count]]


def test_an_unknown_name_is_suggested_among_both():
    result = invoke("layers", "kaiming_norml")
    assert result.exit_code == 2
    assert result.output == (
        "kaiming_norml: error: unknown layer type or initializer 'kaiming_norml'; did you mean 'kaiming_normal'?\n"
    )


def test_initializers_need_no_torch_and_a_warm_cache_not_even_their_models():
    # Creating the spec models takes ~0.2 s: a warm catalogue cache answers without them.
    catalogue.initializers()
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from netcfg.cli.app import app\n"
        "assert CliRunner().invoke(app, ['layers']).exit_code == 0\n"
        "print('netcfg.spec.model' in sys.modules)\n"
        "for args in (['-h'], ['layers', 'kaiming_normal'], ['layers', '--format', 'json']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0\n"
        "print('netcfg.spec.model' in sys.modules, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]
