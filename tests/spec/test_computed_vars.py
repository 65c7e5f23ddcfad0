"""vars computed from the vars above them (issue 12, expressions)."""

import pytest

from netcfg.errors import SpecError
from netcfg.spec.loader import load_spec

CHAIN = """\
netcfg: 1
vars:
  width: 8
  hidden: "${width * 4}"
  half: "${hidden // 2}"
  name: "mlp_${width}"
input: {shape: [2, "${width}"]}
model:
  type: sequential
  layers:
    - {type: linear, out_features: "${hidden}"}
    - {type: linear, out_features: "${half}"}
"""


def errors(path, overrides=()):
    with pytest.raises(SpecError) as err:
        load_spec(path, overrides)
    return [str(d) for d in err.value.diagnostics]


def test_a_var_is_an_expression_over_the_vars_above_it(write_spec):
    spec = load_spec(write_spec(CHAIN))
    assert [layer.out_features for layer in spec.model.layers] == [8 * 4, 8 * 4 // 2]
    assert spec.head.input.shape == [2, 8]


def test_an_overridden_var_is_seen_by_the_vars_computed_from_it(write_spec):
    spec = load_spec(write_spec(CHAIN), ["vars.width=3"])
    assert [layer.out_features for layer in spec.model.layers] == [12, 6]
    assert spec.head.input.shape == [2, 3]


def test_a_computed_var_can_be_overridden_itself(write_spec):
    spec = load_spec(write_spec(CHAIN), ["vars.hidden=10"])
    assert [layer.out_features for layer in spec.model.layers] == [10, 5]


def test_an_override_may_be_an_expression(write_spec):
    spec = load_spec(write_spec(CHAIN), ["vars.hidden=${width + 1}"])
    assert [layer.out_features for layer in spec.model.layers] == [9, 4]


def test_a_value_computed_through_a_var_names_the_flag_behind_it(write_spec):
    (msg,) = errors(write_spec(CHAIN.replace("${hidden // 2}", "${hidden - 32}")), ["vars.width=8"])
    assert msg.endswith("12:36: error: 'out_features' must be greater than or equal to 1, got 0 "
                        "(from --set vars.width=8)")  # fmt: skip


def test_the_expanded_spec_keeps_the_expressions_and_reloads_to_the_same_model(write_spec):
    from netcfg.spec.loader import load_spec_data

    spec = load_spec(write_spec(CHAIN), ["vars.width=5"])
    assert spec.data["vars"]["hidden"] == "${width * 4}" and spec.data["vars"]["width"] == 5
    again = load_spec_data(spec.data, "again")
    assert again.model == spec.model


def test_a_cycle_is_one_error_naming_its_vars(write_spec):
    path = write_spec(CHAIN.replace("width: 8", "width: '${half + 1}'"))
    assert errors(path) == [
        f"{path}:3:10: error: vars width -> half -> hidden -> width read each other in a cycle: "
        "each var is computed from the vars above it"
    ]


@pytest.mark.parametrize(
    "vars_text, message",
    [
        ("{a: '${b}', b: 2}", "2:11: error: var 'a' reads 'b', which comes after it: each var is computed from the "
                              "vars above it (move 'b' above 'a')"),
        ("{a: '${a + 1}'}", "2:11: error: var 'a' reads itself"),
        ("{a: '${b * 2}', b: '${a}'}", "2:11: error: vars a -> b -> a read each other in a cycle: each var is "
                                       "computed from the vars above it"),
        ("{a: 1, b: '${a / 0}', c: '${b}'}", "2:17: error: cannot compute 'a / 0': division by zero"),
        ("{a: 1, b: '${widht}'}", "2:17: error: unknown name 'widht' in expression (names available: a)"),
    ],
)  # fmt: skip
def test_bad_vars_are_one_located_error_each(write_spec, vars_text, message):
    # The vars and the model that read a var whose error was reported stay quiet.
    path = write_spec(f"netcfg: 1\nvars: {vars_text}\ninput: {{shape: [2, 4]}}\n"
                      "model: {type: linear, out_features: '${a}'}\n")  # fmt: skip
    (msg,) = errors(path)
    assert msg == f"{path}:{message}"


def test_a_long_cycle_is_said_shortly(write_spec):
    n = 2_000
    lines = [f"  v0: '${{v{n - 1}}}'"] + [f"  v{i}: '${{v{i - 1} + 1}}'" for i in range(1, n)]
    path = write_spec("netcfg: 1\nvars:\n" + "\n".join(lines) + "\ninput: {shape: [2, 4]}\n"
                      "model: {type: linear, out_features: '${v5}'}\n")  # fmt: skip
    assert errors(path) == [
        f"{path}:3:7: error: vars v0 -> v1999 -> v1998 -> v1997 -> v1996 -> ... -> v2 -> v1 -> v0 "
        "(2000 vars) read each other in a cycle: each var is computed from the vars above it"
    ]
