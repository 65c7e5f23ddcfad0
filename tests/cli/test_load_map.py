"""netcfg load-map: the whole `pretrained:` mapping, before any tensor is read."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import save_file
from typer.testing import CliRunner

from netcfg.actions import pretrained
from netcfg.cli.app import app
from tests.actions import reference_layouts as ref
from tests.conftest import ROOT

SPEC = "configs/chapter/reuse_first_layers.yaml"
GPT2 = ["--set", "vars.layers=2", "--set", "vars.width=16", "--set", "vars.heads=2", "--set", "vars.context=8",
        "--set", "vars.vocab=20", "--set", "input.high=20", "--set", "input.shape=[1,4]"]  # fmt: skip


@pytest.fixture(autouse=True)
def no_tensor_is_read(monkeypatch):
    def refuse(header, key):
        raise AssertionError(f"load-map read tensor {key}")

    monkeypatch.setattr(pretrained, "_read_tensor", refuse)
    monkeypatch.chdir(ROOT)


def run(*args: str):
    return CliRunner().invoke(app, ["load-map", *args])


def test_a_table_of_every_loaded_tensor_and_lists_of_the_rest():
    result = run(SPEC)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1] == ("pretrained 0: configs/chapter/mlp_trained.safetensors: 4 tensors, 2 model tensors loaded, "
                        "2 file tensors unused, 0 ignored")  # fmt: skip
    assert lines[3].split() == ["features.0.weight", "[256,", "20]", "0.weight", "map", "'0.'"]
    assert lines[4].split() == ["features.0.bias", "[256]", "0.bias", "map", "'0.'"]
    assert "not used (pretrained 0): 2\n  2.bias\n  2.weight" in result.stdout
    assert "model tensors not loaded: 2\n  head.weight\n  head.bias" in result.stdout
    assert result.stderr == ""  # strict: false in that spec


def test_a_gpt2_checkpoint_through_the_shipped_map(tmp_path):
    model = ref.GPT2Model(vocab=20, context=8, width=16, layers=2, heads=2)
    file = tmp_path / "gpt2.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(file))
    result = run("configs/gpt2.yaml", *GPT2, "--set", f"pretrained=[{{file: '{file}', keymap: hf_gpt2}}]",
                 "--format", "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    (entry,) = report["entries"]
    rows = {row["target"]: row for row in entry["loaded"]}
    assert rows["transformer.h.1.attn.qkv.weight"] == {
        "target": "transformer.h.1.attn.qkv.weight", "shape": [48, 16], "keys": ["h.1.attn.c_attn.weight"],
        "transform": "transpose", "rule": "keymap hf_gpt2 rename 0",
    }  # fmt: skip
    assert len(rows) == 28 and entry["unused"] == [] and report["missing"] == []
    assert entry["ignored"] == ["h.0.attn.bias", "h.0.attn.masked_bias", "h.1.attn.bias", "h.1.attn.masked_bias"]
    assert report["warnings"] == [] and report["refusals"] == []


def test_strict_true_shows_the_mapping_then_refuses():
    result = run(SPEC, "--set", "pretrained.0.strict=true")
    assert result.exit_code == 2
    assert "features.0.weight" in result.stdout
    assert result.stderr.splitlines() == [
        f"{SPEC}:17:3: error: 2 model tensors are not loaded by `pretrained:`: 'head.weight', 'head.bias' "
        "(strict: true)",
        f"{SPEC}:17:5: error: pretrained 0: 2 tensors of configs/chapter/mlp_trained.safetensors are not used by any "
        "rule: '2.bias', '2.weight' (strict: true)",
    ]


def test_warnings_go_to_stderr():
    result = run(SPEC, "--set", "pretrained.0.strict=warn")
    assert result.exit_code == 0
    assert [line.split(": warning: ")[1][:26] for line in result.stderr.splitlines()] == [
        "2 model tensors are not lo", "pretrained 0: 2 tensors of"]  # fmt: skip


def test_a_rule_problem_is_one_located_line_and_exit_2():
    result = run(SPEC, "--set", 'pretrained.0.map={"0.": "features.0.", "9.": "head."}')
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == ('--set pretrained.0.map={"0.": "features.0.", "9.": "head."}: error: pretrained 0: '
                             "'9.' matches no tensor of configs/chapter/mlp_trained.safetensors\n")  # fmt: skip


def test_a_spec_without_pretrained_has_an_empty_map():
    result = run("configs/mlp.yaml")
    assert result.exit_code == 0 and result.stdout == "configs/mlp.yaml: no `pretrained:` entries\n"
