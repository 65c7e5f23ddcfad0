"""Models with several named inputs and several outputs, through every command: the outputs
equal a hand-written PyTorch twin given the same weights and inputs; a spec of one unnamed input
and one output prints and computes as before."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from netcfg.cli.app import app

SPEC = """netcfg: 1
input:
  ids: {shape: [2, 5], dtype: int64, high: 50}
  types: {shape: [2, 5], dtype: int64, high: 2}
  scale: {shape: [2, 1, 1]}
model:
  type: graph
  nodes:
    tok: {type: embedding, num_embeddings: 50, embedding_dim: 8, inputs: ids}
    typ: {type: embedding, num_embeddings: 2, embedding_dim: 8, inputs: types}
    sum: {type: add, inputs: [tok, typ]}
    scaled: {type: mul, inputs: [sum, scale]}
    head: {type: linear, out_features: 3}
    pool: {type: select, dim: 1, index: 0, inputs: scaled}
  output: OUTPUT
"""


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text(SPEC.replace("OUTPUT", "{logits: head, pooled: pool}"))
    return path


def twin(weights: dict, ids, types, scale) -> dict:
    """The spec written by hand."""
    x = (F.embedding(ids, weights["tok.weight"]) + F.embedding(types, weights["typ.weight"])) * scale
    return {"logits": F.linear(x, weights["head.weight"], weights["head.bias"]), "pooled": x[:, 0]}


def _built(path):
    from netcfg.actions.model import build_model
    from netcfg.spec.loader import load_spec

    return build_model(load_spec(str(path)))


def inputs_file(tmp_path, **tensors):
    path = tmp_path / "x.safetensors"
    save_file(tensors, path)
    return path


def test_run_on_named_inputs_gives_the_twins_outputs(tmp_path, spec):
    gen = torch.Generator().manual_seed(1)
    ids, types = torch.randint(0, 50, (3, 7), generator=gen), torch.randint(0, 2, (3, 7), generator=gen)
    scale = torch.rand(3, 1, 1, generator=gen)
    given = inputs_file(tmp_path, scale=scale, ids=ids, types=types)  # any order in the file
    out = tmp_path / "out.safetensors"
    result = invoke("run", spec, "--input", given, "-o", out, "--seed", "4")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1:4] == ["input  ids [3, 7] int64", "input  types [3, 7] int64", "input  scale [3, 1, 1] float32"]
    assert lines[4] == "output logits [3, 7, 3] float32" and lines[6] == "output pooled [3, 8] float32"
    ckpt = tmp_path / "m.safetensors"
    assert invoke("save", spec, "-o", ckpt, "--seed", "4").exit_code == 0
    written, expected = load_file(out), twin(load_file(ckpt), ids, types, scale)
    assert set(written) == {"logits", "pooled"}
    for name in expected:
        torch.testing.assert_close(written[name], expected[name], rtol=0, atol=1e-6)


def test_forward_takes_the_inputs_in_order_and_by_name(spec):
    built = _built(spec)
    from netcfg.building.builder import sample_inputs

    ids, types, scale = sample_inputs(built.spec)
    by_position = built.model(ids, types, scale)
    by_name = built.model(scale=scale, ids=ids, types=types)
    mixed = built.model(ids, scale=scale, types=types)
    expected = twin(built.model.state_dict(), ids, types, scale)
    for out in (by_position, by_name, mixed):
        assert list(out) == ["logits", "pooled"]
        for name in expected:
            torch.testing.assert_close(out[name], expected[name], rtol=0, atol=1e-6)
    with pytest.raises(TypeError, match="missing input 'scale'"):
        built.model(ids, types)


def test_a_list_of_outputs_is_a_tuple_named_by_its_nodes(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text(SPEC.replace("OUTPUT", "[pool, head]"))
    built = _built(path)
    from netcfg.building.builder import sample_inputs

    out = built.model(*sample_inputs(built.spec))
    assert isinstance(out, tuple) and [tuple(t.shape) for t in out] == [(2, 8), (2, 5, 3)]
    assert list(built.outputs) == ["pool", "head"]
    result = invoke("validate", path)
    assert result.output == f"{path}: ok (443 parameters, outputs pool [2, 8], head [2, 5, 3])\n"


def test_every_command_takes_a_model_of_several_inputs_and_outputs(tmp_path, spec):
    run = invoke("run", spec)
    assert run.exit_code == 0, run.output
    checksum = run.output.splitlines()[-1]
    ckpt = tmp_path / "m.safetensors"
    assert invoke("save", spec, "-o", ckpt).exit_code == 0
    loaded = invoke("load", ckpt, "--check")
    assert loaded.exit_code == 0, loaded.output
    assert checksum.split()[-1] in loaded.output  # the same outputs, the same checksum
    report = json.loads(invoke("inspect", spec, "--format", "json").output)
    assert list(report["inputs"]) == ["ids", "types", "scale"]
    assert report["inputs"]["scale"]["shape"] == [2, 1, 1]
    assert report["outputs"] == {"logits": {"shape": [2, 5, 3], "dtype": "float32"},
                                 "pooled": {"shape": [2, 8], "dtype": "float32"}}  # fmt: skip
    # FLOPs from the rules, as PyTorch's FlopCounterMode counts the forward pass of all inputs
    from torch.utils.flop_counter import FlopCounterMode

    from netcfg.building.builder import sample_inputs

    built = _built(spec)
    with FlopCounterMode(display=False) as counter:
        built.model(*sample_inputs(built.spec))
    assert report["flops"] == counter.get_total_flops() == 2 * 10 * 8 * 3
    table = invoke("inspect", spec).output.splitlines()
    assert table[1:6] == ["input ids [2, 5] int64", "input types [2, 5] int64", "input scale [2, 1, 1] float32",
                          "output logits [2, 5, 3] float32", "output pooled [2, 8] float32"]  # fmt: skip
    bench = invoke("bench", spec, "--batch", "3", "--min-time", "0.05", "--warmup", "1", "--format", "json")
    assert bench.exit_code == 0, bench.output
    assert json.loads(bench.output)[0]["batch"] == 3
    train = invoke("bench", spec, "--mode", "train", "--min-time", "0.05", "--warmup", "1")
    assert train.exit_code == 0, train.output
    assert invoke("build", spec).exit_code == 0


def test_bench_batch_applies_to_every_input(spec):
    from netcfg.actions.bench import with_batch
    from netcfg.spec.loader import load_spec

    resized = with_batch(load_spec(str(spec)), 6)
    assert [one.shape for one in resized.head.inputs.values()] == [[6, 5], [6, 5], [6, 1, 1]]


def test_run_input_names_every_missing_and_unknown_tensor(tmp_path, spec):
    given = inputs_file(tmp_path, ids=torch.zeros(2, 5, dtype=torch.int64), typos=torch.zeros(2, 5))
    result = invoke("run", spec, "--input", given)
    assert result.exit_code == 2
    assert result.stderr == (
        f"--input {given}: error: no tensor named 'types', 'scale'; tensors 'typos' are no input of the model "
        "(the model's inputs: ids, types, scale)\n"
    )


def test_an_input_the_model_cannot_take_names_every_input(tmp_path, spec):
    given = inputs_file(tmp_path, ids=torch.zeros(2, 5, dtype=torch.int64), types=torch.zeros(2, 5, dtype=torch.int64),
                        scale=torch.zeros(2, 3, 3))  # fmt: skip
    result = invoke("run", spec, "--input", given)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert result.stderr.startswith(
        f"--input {given}: error: the model cannot take an input ids [2, 5] int64, types [2, 5] int64, scale [2, 3, 3] "
        "float32 (its spec declares ids [2, 5] int64, types [2, 5] int64, scale [2, 1, 1] float32): "
    )


def test_sample_inputs_are_drawn_in_order_from_one_seed(spec):
    from netcfg.building.builder import sample_inputs
    from netcfg.spec.loader import load_spec

    ids, types, scale = sample_inputs(load_spec(str(spec)), seed=5)
    gen = torch.Generator().manual_seed(5)
    assert torch.equal(ids, torch.randint(0, 50, (2, 5), generator=gen))
    assert torch.equal(types, torch.randint(0, 2, (2, 5), generator=gen))
    assert torch.equal(scale, torch.rand(2, 1, 1, generator=gen))


def test_an_embedding_reading_a_named_input_checks_its_declared_ids(tmp_path):
    path = tmp_path / "ids.yaml"
    path.write_text(SPEC.replace("high: 50", "high: 60").replace("OUTPUT", "head"))
    result = invoke("validate", path)
    assert result.exit_code == 2
    assert result.stderr == (
        f"{path}:9:44: error: layer 'tok' (embedding) with input [2, 5]: the ids of the sample input 'ids' lie in "
        "[0, 60), outside the 50 rows of this embedding (ids must lie in [0, num_embeddings): see input.ids.low and "
        "high)\n"
    )


def test_a_spec_netcfg_wrote_back_loads_again(tmp_path, spec):
    ckpt = tmp_path / "m.safetensors"
    assert invoke("save", spec, "-o", ckpt).exit_code == 0
    info = invoke("inspect", ckpt, "--format", "json")
    assert info.exit_code == 0, info.output
