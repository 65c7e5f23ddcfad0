"""`pretrained:` key rules: longest prefix first, regex renames, transforms, fuse and split, ignore,
strict, and every problem found from the headers before any tensor is read."""

from __future__ import annotations

import re

import pytest
import torch
from safetensors.torch import save_file

import netcfg
from netcfg.actions import pretrained
from netcfg.actions.model import build_model
from netcfg.errors import CheckpointError, SpecError
from netcfg.spec.keymap import MAX_KEY, compile_pattern, expand
from netcfg.spec.loader import load_spec_data

MLP = {"type": "sequential", "layers": [
    {"name": "features", "type": "sequential", "layers": [{"type": "linear", "out_features": 6}, {"type": "relu"}]},
    {"name": "head", "type": "linear", "out_features": 3},
]}  # fmt: skip
WEIGHTS = {
    "0.weight": torch.randn(6, 4),
    "0.bias": torch.randn(6),
    "2.weight": torch.randn(3, 6),
    "2.bias": torch.randn(3),
}


@pytest.fixture
def checkpoint(tmp_path):
    """Write tensors to a safetensors file; returns its path."""

    def write(tensors: dict, name: str = "w.safetensors") -> str:
        path = tmp_path / name
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
        return str(path)

    return write


def built(model: dict, *entries: dict, shape=(2, 4), device="cpu"):
    data = {"netcfg": 1, "input": {"shape": list(shape)}, "model": model, "pretrained": list(entries)}
    return build_model(load_spec_data(data, "spec.yaml"), device=device)


def problems(model: dict, *entries: dict) -> list[str]:
    with pytest.raises(CheckpointError) as err:
        built(model, *entries, device="meta")
    return [d.message for d in err.value.diagnostics]


# ---------------------------------------------------------------- prefixes


@pytest.mark.parametrize("order", ["catch-all first", "catch-all last"])
def test_the_longest_prefix_wins_whatever_the_order(order, checkpoint):
    file = checkpoint(WEIGHTS)
    rules = {"": "features.", "2.": "head."} if order == "catch-all first" else {"2.": "head.", "": "features."}
    b = built(MLP, {"file": file, "map": rules, "strict": True})
    assert torch.equal(b.model.features[0].weight, WEIGHTS["0.weight"])
    assert torch.equal(b.model.head.weight, WEIGHTS["2.weight"])
    assert b.pretrained["head.bias"] == f"{file}:2.bias"
    assert b.warnings == []


def test_a_prefix_every_key_of_which_a_longer_one_takes_is_reported(checkpoint):
    file = checkpoint(WEIGHTS)
    rules = {"0.": "features.0.", "0.w": "features.0.w", "0.b": "features.0.b", "2.": "head."}
    messages = problems(MLP, {"file": file, "map": rules})
    assert messages == [f"pretrained 0: '0.' takes no tensor of {file}: longer prefixes or renames take every key it "
                        "matches"]  # fmt: skip


# ---------------------------------------------------------------- renames


def test_regex_groups_rename(checkpoint):
    file = checkpoint(WEIGHTS)
    model = {"type": "sequential", "layers": [{"name": "l0", "type": "linear", "out_features": 6}, {"type": "relu"},
                                              {"name": "l2", "type": "linear", "out_features": 3}]}  # fmt: skip
    b = built(model, {"file": file, "rename": [{"regex": r"(\d)\.(?P<kind>weight|bias)", "to": r"l\1.\g<kind>"}]})
    assert torch.equal(b.model.l0.weight, WEIGHTS["0.weight"]) and torch.equal(b.model.l2.bias, WEIGHTS["2.bias"])
    assert b.warnings == []


def test_the_first_matching_rename_takes_a_key_and_renames_come_before_prefixes(checkpoint):
    file = checkpoint(WEIGHTS)
    rename = [{"regex": r"2\.(.*)", "to": r"head.\1"}, {"regex": r"(\d)\.(.*)", "to": r"features.\1.\2"}]
    b = built(MLP, {"file": file, "rename": rename, "map": {"": "nowhere."}})
    assert b.pretrained["head.weight"] == f"{file}:2.weight"
    assert b.pretrained["features.0.weight"] == f"{file}:0.weight"


def test_transpose_loads_conv1d_style_weights(checkpoint):
    weight = torch.randn(6, 4)
    file = checkpoint({"w": weight.t(), "b": WEIGHTS["0.bias"]})  # stored [in, out] as GPT-2's Conv1D
    rename = [
        {"regex": "w", "to": "features.0.weight", "transform": "transpose"},
        {"regex": "b", "to": "features.0.bias"},
    ]
    b = built(MLP, {"file": file, "rename": rename, "strict": False})
    assert torch.equal(b.model.features[0].weight, weight)
    assert b.pretrained["features.0.weight"] == f"{file}:w (transpose)"


def test_reshape_takes_the_model_tensors_shape(checkpoint):
    file = checkpoint({"pos": torch.randn(1, 5, 8)})  # torchvision's [1, L, D] position table
    model = {"type": "sequential", "layers": [
        {"type": "embedding", "num_embeddings": 9, "embedding_dim": 8},
        {"name": "pos", "type": "pos_embedding", "max_len": 5, "dim": 8},
    ]}  # fmt: skip
    data = {"netcfg": 1, "input": {"shape": [1, 5], "dtype": "int64", "high": 9}, "model": model,
            "pretrained": [{"file": file, "rename": [{"regex": "pos", "to": "pos.weight", "transform": "reshape"}],
                            "strict": False}]}  # fmt: skip
    b = build_model(load_spec_data(data, "spec.yaml"), device="cpu")
    from safetensors.torch import load_file

    assert torch.equal(b.model.pos.weight, load_file(file)["pos"][0])
    assert b.pretrained["pos.weight"] == f"{file}:pos (reshape)"


ATTENTION = {"type": "attention", "heads": 4, "kv_heads": 2}  # width 8: q 8 rows, k and v 4 each


def test_fuse_concatenates_rows_in_the_listed_order(checkpoint):
    parts = {"q": torch.randn(8, 8), "k": torch.randn(4, 8), "v": torch.randn(4, 8)}
    file = checkpoint({f"{n}.weight": t for n, t in parts.items()} | {f"{n}.bias": t[:, 0] for n, t in parts.items()})
    rule = {"regex": [r"q\.(weight|bias)", r"k\.(weight|bias)", r"v\.(weight|bias)"], "to": r"qkv.\1"}
    b = built(ATTENTION, {"file": file, "rename": [rule], "strict": False}, shape=(2, 3, 8))
    assert torch.equal(b.model.qkv.weight, torch.cat([parts["q"], parts["k"], parts["v"]]))
    assert torch.equal(b.model.qkv.bias, torch.cat([parts["q"], parts["k"], parts["v"]])[:, 0])
    assert b.pretrained["qkv.weight"] == f"{file}:q.weight + k.weight + v.weight (fuse 3)"


def test_split_gives_each_target_its_rows(checkpoint):
    fused = torch.randn(8, 16)  # Conv1D-style [in, q + k + v out]
    file = checkpoint({"c_attn.weight": fused})
    model = {"type": "graph", "nodes": {
        "q": {"type": "linear", "out_features": 8, "bias": False, "inputs": "input"},
        "k": {"type": "linear", "out_features": 4, "bias": False, "inputs": "input"},
        "v": {"type": "linear", "out_features": 4, "bias": False, "inputs": "input"},
        "out": {"type": "concat", "inputs": ["q", "k", "v"]},
    }}  # fmt: skip
    rule = {"regex": r"c_attn\.weight", "to": ["q.weight", "k.weight", "v.weight"], "transform": "transpose"}
    b = built(model, {"file": file, "rename": [rule], "strict": True}, shape=(2, 8))
    rows = fused.t()
    assert torch.equal(b.model.q.weight, rows[:8]) and torch.equal(b.model.v.weight, rows[12:])
    assert b.pretrained["k.weight"] == f"{file}:c_attn.weight (transpose, split rows 8:12)"


# ---------------------------------------------------------------- ignore, strict


def test_ignored_keys_are_neither_loaded_nor_reported(checkpoint):
    file = checkpoint(WEIGHTS | {"0.mask": torch.ones(2)})
    b = built(MLP, {"file": file, "map": {"0.": "features.0.", "2.": "head."}, "ignore": [r".*\.mask"], "strict": True})
    assert "0.mask" not in " ".join(b.pretrained.values()) and b.warnings == []


def test_strict_warn_is_one_counted_warning_per_kind(checkpoint):
    tensors = {f"extra.{i}": torch.zeros(1) for i in range(25)} | {"0.weight": WEIGHTS["0.weight"]}
    b = built(MLP, {"file": checkpoint(tensors), "map": {"0.": "features.0."}})
    assert len(b.warnings) == 2
    missing, unused = b.warnings
    assert missing.startswith("spec.yaml:1:1: warning: 3 model tensors are not loaded by `pretrained:`: "
                              "'features.0.bias', 'head.weight', 'head.bias'")  # fmt: skip
    assert "25 tensors of" in unused and unused.count("'extra.") == 20 and "and 5 more" in unused
    assert unused.endswith("(strict: false silences this)")


def test_strict_true_refuses_strict_false_is_silent(checkpoint):
    file = checkpoint(WEIGHTS)
    messages = problems(MLP, {"file": file, "map": {"0.": "features.0."}, "strict": True})
    assert messages == [
        "2 model tensors are not loaded by `pretrained:`: 'head.weight', 'head.bias' (strict: true)",
        f"pretrained 0: 2 tensors of {file} are not used by any rule: '2.bias', '2.weight' (strict: true)",
    ]
    assert built(MLP, {"file": file, "map": {"0.": "features.0."}, "strict": False}).warnings == []


# ---------------------------------------------------------------- problems: all at once, nothing read


def test_every_problem_is_reported_and_no_tensor_is_read(checkpoint, monkeypatch):
    reads = []
    monkeypatch.setattr(pretrained, "_read_tensor", lambda header, key: reads.append(key))
    good = {"file": checkpoint(WEIGHTS, "good.safetensors"), "map": {"0.": "features.0."}}
    bad = {"file": checkpoint(WEIGHTS, "bad.safetensors"), "strict": False, "rename": [
        {"regex": "nothing", "to": "x"},
        {"regex": r"0\.bias", "to": "head.weight", "transform": "transpose"},
        {"regex": r"2\.weight", "to": "features.0.weight"},
    ]}  # fmt: skip
    messages = problems(MLP, good, bad)
    bad_file = bad["file"]
    assert messages == [
        f"pretrained 1: rename 0 matches no tensor of {bad_file}",
        f"pretrained 1: {bad_file}: rename 1: transpose needs a 2-d tensor, '0.bias' is [6]",
        f"pretrained 1: {bad_file}: '2.weight' is F32 [3, 6] in the file, "
        "'features.0.weight' is F32 [6, 4] in the model",
    ]
    assert reads == []


def test_two_rules_loading_one_tensor(checkpoint):
    file = checkpoint({"a.weight": torch.randn(3, 6), "b.weight": torch.randn(3, 6)})
    messages = problems(MLP, {"file": file, "map": {"a.": "head.", "b.": "head."}, "strict": False})
    assert messages == [f"pretrained 0: map 'b.' and map 'a.' both load 'head.weight': from {file}: 'b.weight' "
                        "and 'a.weight'"]  # fmt: skip


def test_two_entries_loading_one_tensor(checkpoint):
    first, second = checkpoint(WEIGHTS, "first.safetensors"), checkpoint(WEIGHTS, "second.safetensors")
    messages = problems(MLP, {"file": first, "map": {"2.": "head."}}, {"file": second, "map": {"2.w": "head.w"}})
    assert messages == [f"pretrained 1: map '2.w' and pretrained 0 map '2.' both load 'head.weight': "
                        f"from {second}:2.weight and {first}:2.weight"]  # fmt: skip


def test_two_keys_loading_tied_tensors(checkpoint):
    model = {"type": "sequential", "layers": [
        {"name": "a", "type": "linear", "out_features": 4, "bias": False},
        {"name": "b", "type": "linear", "out_features": 4, "bias": False},
    ]}  # fmt: skip
    file = checkpoint({"x": torch.randn(4, 4), "y": torch.randn(4, 4)})
    rename = [{"regex": "x", "to": "a.weight"}, {"regex": "y", "to": "b.weight"}]
    data = {"netcfg": 1, "input": {"shape": [2, 4]}, "model": model, "ties": [["a.weight", "b.weight"]],
            "pretrained": [{"file": file, "rename": rename}]}  # fmt: skip
    with pytest.raises(CheckpointError, match=r"both load 'b.weight' \(tied to 'a.weight'\)"):
        build_model(load_spec_data(data, "spec.yaml"), device="meta")


def test_incomplete_fuse_and_wrong_split(checkpoint):
    file = checkpoint({"q": torch.randn(8, 8), "k": torch.randn(4, 8), "w": torch.randn(10, 8)})
    model = {"type": "graph", "nodes": {
        "att": {"type": "attention", "heads": 4, "kv_heads": 2, "bias": False},
        "a": {"type": "linear", "out_features": 4, "bias": False, "inputs": "input"},
        "b": {"type": "linear", "out_features": 4, "bias": False, "inputs": "input"},
        "out": {"type": "concat", "inputs": ["att", "a", "b"]},
    }}  # fmt: skip
    rules = [{"regex": ["q", "k", "v"], "to": "att.qkv.weight"}, {"regex": "w", "to": ["a.weight", "b.weight"]}]
    with pytest.raises(CheckpointError) as err:
        built(model, {"file": file, "rename": rules, "strict": False}, shape=(2, 3, 8), device="meta")
    assert [d.message for d in err.value.diagnostics] == [
        f"pretrained 0: {file}: 'w' has 10 rows, its split targets 8 (4 + 4)",
        f"pretrained 0: rename 0: {file} has no tensor for part 3 ('v') of 'att.qkv.weight'",
    ]


# ---------------------------------------------------------------- patterns


@pytest.mark.parametrize(("pattern", "why"), [
    ("(a+)+b", "a repetition inside a repetition"),
    ("(ab|a)*", "an alternation inside a repetition"),
    (r"(a)\1", "a backreference"),
    ("a(?=b)", "a lookahead or lookbehind"),
    ("(", "not a regular expression"),
    ("a" * 501, "a key pattern of 501 characters (at most 500)"),
])  # fmt: skip
def test_patterns_outside_the_safe_subset_are_refused(pattern, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        compile_pattern(pattern)


def test_a_refused_pattern_is_a_located_spec_error():
    data = {"netcfg": 1, "input": {"shape": [2, 4]}, "model": MLP,
            "pretrained": [{"file": "x.safetensors", "rename": [{"regex": "(a|ab)+", "to": "x"}]}]}  # fmt: skip
    with pytest.raises(SpecError, match="an alternation inside a repetition"):
        load_spec_data(data, "spec.yaml")


@pytest.mark.parametrize(("to", "why"), [(r"\2", "has 1 group"), (r"\g<nope>", "has no group 'nope'"),
                                         (r"a\nb", "a backslash in a target is a group")])  # fmt: skip
def test_targets_name_existing_groups(to, why):
    data = {"netcfg": 1, "input": {"shape": [2, 4]}, "model": MLP,
            "pretrained": [{"file": "x.safetensors", "rename": [{"regex": "(a)", "to": to}]}]}  # fmt: skip
    with pytest.raises(SpecError, match=re.escape(why)):
        load_spec_data(data, "spec.yaml")


def test_expand_inserts_groups_and_nothing_else():
    match = re.fullmatch(r"(\d+)\.(?P<rest>.*)", "12.a.b")
    assert expand(r"x\1.\g<rest>.\1", match) == "x12.a.b.12"


def test_keys_past_the_length_limit_are_never_given_to_a_pattern(checkpoint):
    long_key = "a" * (MAX_KEY + 1)
    file = checkpoint({long_key: torch.zeros(1), "0.weight": WEIGHTS["0.weight"]})
    b = built(MLP, {"file": file, "rename": [{"regex": r"0\.(.*)", "to": r"features.0.\1"}], "ignore": ["a*"]})
    assert any(f"'{long_key[:10]}" in w for w in b.warnings)  # unused, not ignored


def test_slow_patterns_stop_at_the_time_limit(checkpoint, monkeypatch):
    """(.*) four times over keys of 1,000 characters: polynomial, yet hours; stopped by the alarm."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or signal.getitimer(signal.ITIMER_REAL)[0] > 0:
        pytest.skip("the limit needs the main thread and a free interval timer (no limit otherwise)")
    monkeypatch.setattr(pretrained, "MATCH_SECONDS", 0.5)
    file = checkpoint({"a" * MAX_KEY: torch.zeros(1)})
    messages = problems(MLP, {"file": file, "rename": [{"regex": "(.*)(.*)(.*)(.*)x", "to": "head.weight"}]})
    assert messages == ["pretrained 0: the key patterns took over 0.5 s: simplify them (fewer open-ended '.*')"]


def test_shipped_map_and_own_rules_together(checkpoint):
    """An entry's own rules come before its key map's: here one GPT-2 tensor goes elsewhere."""
    import tests.actions.reference_layouts as ref

    reference = ref.GPT2Model(vocab=10, context=8, width=8, layers=1, heads=2)
    file = checkpoint({k: v for k, v in reference.state_dict().items()})
    spec = netcfg.spec.loader.load_spec("configs/gpt2.yaml", [
        "vars.layers=1", "vars.width=8", "vars.heads=2", "vars.context=8", "vars.vocab=10", "input.high=10",
        "input.shape=[1,4]",
        f"pretrained=[{{file: '{file}', keymap: hf_gpt2, ignore: ['ln_f\\.bias'], strict: true}}]",
    ])  # fmt: skip
    with pytest.raises(
        CheckpointError, match=r"1 model tensors are not loaded by `pretrained:`: 'transformer.ln_f.bias'"
    ):
        build_model(spec, device="meta")
