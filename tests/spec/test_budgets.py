"""The expansion's budgets: values and text, estimated from the text before a model, a repeat or
a block is expanded, and counted as they are produced (netcfg/spec/budget.py, estimate.py)."""

from __future__ import annotations

import time

import pytest

from netcfg.errors import SpecError
from netcfg.spec.budget import Budget
from netcfg.spec.loader import load_spec
from tests.limits import traced
from tests.test_redteam import block_chain

HEAD = "netcfg: 1\ninput: {shape: [2, 20]}\n"
COUNTED = "(aliases, repeats and interpolation counted)"
VALUES = f"the spec would expand to more than 1,000,000 values {COUNTED}"


def ones(n: int) -> str:
    return "[" + ", ".join(["1"] * n) + "]"


def refused(write_spec, text: str, seconds: float = 5) -> str:
    """The error a spec gets, its path written spec.yaml, checked to come within `seconds`."""
    path = write_spec(text)
    start = time.perf_counter()
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert time.perf_counter() - start < seconds
    return str(err.value).replace(str(path), "spec.yaml")


def test_a_repeat_of_a_large_list_is_refused_at_its_times_before_any_copy(write_spec):
    """8 KB: 5,000 copies of 2,000 values (it took 72 s and 2 GB to say 'unknown key')."""
    text = HEAD + f"model:\n  type: repeat\n  times: 5000\n  body: {{type: identity, junk: {ones(2000)}}}\n"
    assert refused(write_spec, text) == (
        f"spec.yaml:5:10: error: 5,000 copies of a body of about 2,005 values: {VALUES}"
    )


def test_nested_repeats_multiply_the_list(write_spec):
    body = f"{{type: repeat, times: 100, body: {{type: identity, junk: {ones(200)}}}}}"
    text = HEAD + f"model:\n  type: repeat\n  times: 100\n  body: {body}\n"
    assert refused(write_spec, text) == (
        f"spec.yaml:5:10: error: 100 copies of a body of about 20,506 values: {VALUES}"
    )


def test_many_instances_of_a_large_template_are_refused_before_the_model_is_expanded(write_spec):
    blocks = f"blocks:\n  big:\n    body: {{type: identity, junk: {ones(2000)}}}\n"
    layers = ", ".join(["{type: block, block: big}"] * 600)
    message = refused(write_spec, HEAD + blocks + f"model:\n  type: sequential\n  layers: [{layers}]\n")
    assert message == f"spec.yaml:7:3: error: the model would expand to about 1,206,005 values: {VALUES}"


def test_a_list_argument_used_many_times_is_refused_at_the_call(write_spec):
    """A block argument is copied into every use: 100 uses of a 2,000-value list, 10 calls."""
    uses = ", ".join(["'${x}'"] * 100)
    blocks = f"blocks:\n  b:\n    args: {{x: ~}}\n    body: {{type: identity, junk: [{uses}]}}\n"
    calls = ", ".join(
        [f"{{type: block, block: b, args: {{x: &x {ones(2000)}}}}}"] + ["{type: block, block: b, args: {x: *x}}"] * 9
    )
    message = refused(write_spec, HEAD + blocks + f"model: {{type: sequential, layers: [{calls}]}}\n")
    assert message.splitlines()[-1].endswith(f"error: block 'b' would expand to about 200,105 values: {VALUES}")
    assert len(message.splitlines()) == 2  # the first calls' own error, and the budget once


def test_a_repeat_whose_times_is_an_argument_is_counted_with_it(write_spec):
    body = "{type: repeat, times: '${n}', body: {type: identity, junk: '${x}'}}"
    blocks = f"blocks:\n  b:\n    args: {{x: ~, n: 1}}\n    body: {body}\n"
    text = HEAD + blocks + f"model: {{type: block, block: b, args: {{n: 5000, x: {ones(2000)}}}}}\n"
    assert refused(write_spec, text) == (
        f"spec.yaml:7:29: error: block 'b' would expand to about 10,025,006 values: {VALUES}"
    )


def test_a_repeat_of_a_long_string_is_refused_by_its_text(write_spec):
    text = HEAD + f"model:\n  type: repeat\n  times: 100\n  body: {{type: identity, description: {'a' * 2**20}}}\n"
    assert refused(write_spec, text) == (
        "spec.yaml:5:10: error: 100 copies of a body of about 1.0 MiB of text: "
        f"the spec would expand to more than 64 MiB of text {COUNTED}"
    )


def test_interpolated_names_are_refused_past_the_cap_of_a_string(write_spec):
    """1.3 KB: a name of 100 pieces of 9,999 characters, in 1,000 copies (it took 10 s and 2 GB)."""
    name = "${'a' * 9999}" * 100
    text = HEAD + f'model:\n  type: repeat\n  times: 1000\n  body: {{type: identity, name: "{name}"}}\n'
    assert refused(write_spec, text) == ("spec.yaml:6:32: error: an interpolated string longer than 10,000 characters")


def test_the_text_interpolation_produces_is_counted_as_it_is(write_spec):
    """10,000 names of 9,999 characters each are 100 MB: stopped at 64 MiB, as they are made."""
    text = HEAD + "model:\n  type: repeat\n  times: 10000\n  body: {type: identity, name: \"${'a' * 9999}\"}\n"
    assert refused(write_spec, text) == (
        f"spec.yaml:6:32: error: the spec expands to more than 64 MiB of text {COUNTED}"
    )


def test_a_repeat_of_lists_stays_within_memory(write_spec):
    path = write_spec(
        HEAD + f"model:\n  type: repeat\n  times: 10000\n  body: {{type: identity, junk: {ones(2000)}}}\n"
    )
    with traced() as got, pytest.raises(SpecError, match="10,000 copies of a body of about 2,005 values"):
        load_spec(path)
    assert got.seconds < 5 and got.peak_mib < 50


def test_an_expression_failing_in_every_copy_is_one_error(write_spec):
    text = HEAD + "model:\n  type: repeat\n  times: 3\n  body: {type: identity, name: '${1 // 0}'}\n"
    assert (
        refused(write_spec, text)
        == "spec.yaml:6:32: error: cannot compute '1 // 0': integer division or modulo by zero"
    )


def test_a_budget_counts_a_value_as_it_walks_it():
    budget = Budget(values=1_000, text=100)
    budget.spend_on({"a": [1, 2, 3], "b": "xyz"}, lambda: None)
    assert (budget.values_left, budget.text_left) == (1_000 - 8, 100 - 5)
    with pytest.raises(SpecError, match="the spec expands to more than 1,000 values"):
        budget.spend_on([[0] * 500, [0] * 500], lambda: None)
    with pytest.raises(SpecError, match="the spec expands to more than 0 MiB of text"):
        Budget(values=10, text=100).spend_on(["a" * 101], lambda: None)


def test_every_shipped_config_is_far_below_the_budgets(monkeypatch):
    from netcfg.spec import loader
    from tests.conftest import CONFIGS

    used: list[Budget] = []

    class Recording(Budget):
        def __init__(self):
            super().__init__()
            used.append(self)

    monkeypatch.setattr(loader, "Budget", Recording)
    for path in sorted(CONFIGS.rglob("*.yaml")):
        if "plugins" not in path.parts:  # (needs its plugin)
            loader.load_spec(path)
    values = max(b.limits[0] - b.values_left for b in used)
    text = max(b.limits[1] - b.text_left for b in used)
    assert values < 1_000_000 // 100 and text < 64 * 2**20 // 1000, (values, text)


# ---------------------------------------------------------------- a spec given as data or JSON (a checkpoint's)


def test_an_embedded_spec_gets_the_expansion_budgets_of_a_file():
    from netcfg.spec.loader import load_spec_data

    data = {"netcfg": 1, "input": {"shape": [2, 20]}}
    data["model"] = {"type": "repeat", "times": 5000, "body": {"type": "identity", "junk": [1] * 2000}}
    with traced() as got, pytest.raises(SpecError) as err:
        load_spec_data(data, "x.safetensors (embedded spec)")
    assert got.seconds < 5 and got.peak_mib < 50
    assert (
        str(err.value)
        == f"x.safetensors (embedded spec):1:1: error: 5,000 copies of a body of about 2,005 values: {VALUES}"
    )


def test_a_10_mb_json_list_is_refused_before_it_is_parsed():
    from netcfg.spec.loader import read_json

    text = '{"x": [' + "1," * 4_900_000 + "1]}"
    with traced() as got, pytest.raises(SpecError) as err:
        read_json(text, "x (embedded spec)")
    assert (
        str(err.value) == "x (embedded spec): error: the spec holds more than 200,000 values, the limit of a spec file"
    )
    assert got.seconds < 5 and got.peak_mib < 50


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"a": 1, "a": 2}', "duplicate key 'a' in the top level"),
        ('{"model": {"layers": [{}, {"type": "relu", "type": "tanh"}]}}', "duplicate key 'type' in model.layers.1"),
        ('[{"x": [{"y": 1, "y": 1}]}]', "duplicate key 'y' in 0.x.0"),
    ],
)
def test_a_key_given_twice_in_json_is_refused_naming_it(text, message):
    from netcfg.spec.loader import read_json

    with pytest.raises(SpecError) as err:
        read_json(text, "f")
    assert str(err.value) == f"f: error: {message} (JSON would keep the last one)"


def test_json_values_are_counted_without_the_punctuation_inside_strings():
    from netcfg.spec.loader import read_json

    assert read_json('{"a": ["' + ",:[{" * 100_000 + '"]}', "f") == {"a": [",:[{" * 100_000]}
    with pytest.raises(SpecError, match="the spec is larger than 10 MiB, the limit of a spec file"):
        read_json('"' + "a" * (10 * 2**20) + '"', "f")


def _nested(levels: int) -> str:
    """A spec whose innermost layer is `levels` YAML levels deep (the top mapping is level 1)."""
    model = "{type: linear, out_features: 8}"
    for _ in range((levels - 2) // 2):
        model = f"{{type: sequential, layers: [{model}]}}"
    return f"netcfg: 1\ninput: {{shape: [2, 8]}}\nmodel: {model}\n"


def test_data_nested_as_deep_as_a_file_may_be_is_accepted_as_data_too(write_spec):
    """Nesting counts collections, not scalars, as in YAML: a spec saved from the deepest file
    loads back (a scalar at level 101 was refused)."""
    from netcfg.spec.loader import load_spec_data
    from netcfg.spec.yaml_source import read_yaml

    deepest = load_spec(write_spec(_nested(100)))
    assert load_spec_data(read_yaml(_nested(100), "f").data, "f").model == deepest.model
    with pytest.raises(SpecError, match="nesting deeper than 100 levels"):
        load_spec(write_spec(_nested(102)))
    with pytest.raises(SpecError, match="nesting deeper than 100 levels"):
        load_spec_data({"netcfg": 1, "x": _deep_list(101)}, "f")


@pytest.mark.parametrize(("calls", "wrap"), [(150, True), (1000, False)])
def test_blocks_calling_blocks_past_100_levels_are_one_located_error(write_spec, calls, wrap):
    """150 templates in sequentials were a RecursionError in the build, 1,000 bare ones in the
    expansion. Each call takes a level (and each sequential): the error is at the call that
    would be level 101, in the body of the 100th (or 50th) template called."""
    text = block_chain(calls, wrap)
    deep = 50 if wrap else 100
    last = calls - deep
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith(f"  b{last}:"))
    column = text.splitlines()[line - 1].index(f"{{type: block, block: b{last - 1}}}") + 1
    assert refused(write_spec, text, seconds=10) == (
        f"spec.yaml:{line}:{column}: error: nesting deeper than 100 levels once blocks are expanded "
        f"({deep} block calls deep, 'b{calls - 1}' to 'b{last}')"
    )


def test_blocks_calling_blocks_up_to_100_levels_build_and_run(write_spec):
    import torch

    from netcfg.building.builder import build_spec

    for text in (block_chain(50, True), block_chain(99, False)):
        built = build_spec(load_spec(write_spec(text)), device="cpu")
        assert built.model(torch.zeros(2, 20)).shape == (2, 8)


def _deep_list(levels: int) -> list:
    value: list = []
    for _ in range(levels - 2):
        value = [value]
    return value


def test_data_gets_the_text_limit_of_a_file():
    """Data that did not come from text can repeat one string object, as an alias does."""
    from netcfg.spec.loader import load_spec_data

    with pytest.raises(SpecError, match="the spec holds more than 64 MiB of text, the limit of a spec file"):
        load_spec_data({"netcfg": 1, "x": ["a" * 2**20] * 100}, "f")


# ---------------------------------------------------------------- checks linear in what they check


def test_5_000_unknown_keys_list_20_with_a_did_you_mean_and_count_the_rest(write_spec):
    keys = ", ".join(f"k{i}: 1" for i in range(5_000))
    message = refused(write_spec, HEAD + f"model: {{type: identity, outfeatures: 1, {keys}}}\n")
    lines = message.splitlines()
    assert lines[0] == "spec.yaml:3:25: error: unknown key 'outfeatures' for identity"
    assert len(lines) == 21
    assert lines[-1].endswith("error: ... and 4,981 more unknown keys")
