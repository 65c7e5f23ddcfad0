"""`netcfg schema` accepts what the loader accepts (${...} expressions anywhere a value goes) and
still refuses what no substitution can make valid."""

import copy
import json

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from netcfg.cli.app import app
from netcfg.errors import NetcfgError, SpecError
from netcfg.spec.loader import load_spec, load_spec_data
from netcfg.spec.schema import json_schema
from netcfg.spec.yaml_source import read_yaml
from tests.conftest import CONFIGS, ROOT
from tests.test_configs import SPECS, extra_args

GOLDEN = sorted((ROOT / "tests" / "golden" / "specs").glob("*.yaml"))


def cli_schema(*args: str) -> dict:
    result = CliRunner().invoke(app, ["schema", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def errors(schema: dict, data) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(data)]


@pytest.fixture(scope="module")
def computed():
    return json_schema()


@pytest.fixture(scope="module", params=["cached", "computed"])
def schema(request, computed):
    """`netcfg schema` answers from the cached catalogue; with a plugin it computes the schema."""
    return cli_schema() if request.param == "cached" else computed


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_every_config_matches_the_schema(path, schema, monkeypatch):
    data = yaml.safe_load(path.read_text())
    args = extra_args(path)
    if args:  # a plugin's layer type is unknown without it, and known with it
        assert errors(schema, data)
        monkeypatch.chdir(ROOT)
        schema = cli_schema(*args)
    assert errors(schema, data) == []


def test_specs_the_loader_accepts_match_the_schema(computed):
    refused = {}
    for path in GOLDEN:
        try:
            load_spec(path)
        except NetcfgError:  # most golden specs exist to fail
            continue
        found = errors(computed, read_yaml(path.read_text(), str(path)).data)
        if found:
            refused[path.name] = found
    assert refused == {}


MLP = {
    "netcfg": 1,
    "vars": {"width": 8, "act": "relu", "kind": "normal", "on": True},
    "input": {"shape": [2, 4]},
    "model": {"type": "sequential", "layers": [{"type": "linear", "out_features": 3}]},
}

# Each is a valid spec only because ${...} is substituted before validation.
VALID = {
    "int": {"model": {"type": "linear", "out_features": "${width}"}},
    "bool and list items": {
        "model": {"type": "conv1d", "out_channels": 2, "kernel_size": ["${width // 4}"], "bias": "${on}"},
        "input": {"shape": [2, 3, "${width}"]},
    },
    "enum": {"model": {"type": "gelu", "approximate": "${'tanh' if on else 'none'}"}},
    "type": {"model": {"type": "${act}"}},
    "init kind": {"init": [{"init": {"kind": "${kind}", "std": "${0.1 * 2}"}}]},
    "version": {"netcfg": "${1}"},
    "if": {"model": {"type": "sequential", "layers": [{"type": "relu", "if": "${not on}"}, {"type": "tanh"}]}},
    "repeat with names": {
        "model": {
            "type": "repeat",
            "times": "${width // 4}",
            "merge": "${'add'}",
            "body": {"type": "linear", "out_features": 4, "name": "fc_${index}"},
        }
    },
    "node from a block argument": {
        "blocks": {"wrap": {"args": {"inner": None}, "body": {"type": "sequential", "layers": ["${inner}"]}}},
        "model": {"type": "block", "block": "wrap", "args": {"inner": {"type": "relu"}}},
    },
}

# Each is refused by the loader, and must be by the schema: no substitution can make it valid.
INVALID = {
    "unknown layer type": {"model": {"type": "lineer", "out_features": 3}},
    "unknown key in a layer": {"model": {"type": "linear", "out_features": 3, "out_feature": 3}},
    "a string that is no expression": {"model": {"type": "linear", "out_features": "ten"}},
    "an unclosed expression": {"model": {"type": "linear", "out_features": "${width"}},
    "a missing required field": {"model": {"type": "linear"}},
    "a wrong top-level key": {"modle": {"type": "relu"}},
    "an if that is no boolean": {"model": {"type": "sequential", "layers": [{"type": "relu", "if": "yes"}]}},
    "an unknown initializer": {"init": [{"init": {"kind": "gaussian"}}]},
}


def spec(changes: dict) -> dict:
    data = copy.deepcopy(MLP)
    data.update(copy.deepcopy(changes))
    return data


@pytest.mark.parametrize("changes", VALID.values(), ids=VALID.keys())
def test_expressions_are_accepted_where_the_loader_takes_them(changes, computed):
    data = spec(changes)
    load_spec_data(copy.deepcopy(data), "spec.yaml")
    assert errors(computed, data) == []


@pytest.mark.parametrize("changes", INVALID.values(), ids=INVALID.keys())
def test_invalid_specs_are_refused(changes, computed):
    data = spec(changes)
    with pytest.raises(SpecError):
        load_spec_data(copy.deepcopy(data), "spec.yaml")
    assert errors(computed, data)


def test_fields_keep_their_docs_defaults_and_choices(computed):
    linear = computed["$defs"]["layer_linear"]["properties"]
    assert linear["bias"]["default"] is True and linear["bias"]["description"] == "Learn an additive bias."
    approximate = computed["$defs"]["layer_gelu"]["properties"]["approximate"]
    assert {"enum": ["none", "tanh"], "type": "string"} in approximate["anyOf"]
    assert approximate["default"] == "none"
