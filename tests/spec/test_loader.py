import pytest

from netcfg.errors import InputError, SpecError
from netcfg.spec.loader import load_spec, load_spec_data

MLP = """\
netcfg: 1
vars: {width: 16}
input: {shape: [2, 4]}
model:
  type: sequential
  layers:
    - {type: linear, out_features: "${width}"}
    - {type: relu}
    - {type: linear, out_features: 3}
"""


def errors(path, overrides=()):
    with pytest.raises(SpecError) as err:
        load_spec(path, overrides)
    return [str(d) for d in err.value.diagnostics]


def test_vars_are_substituted_with_their_type(write_spec):
    spec = load_spec(write_spec(MLP))
    assert spec.model.layers[0].out_features == 16


def test_override_changes_a_var_and_a_nested_value(write_spec):
    spec = load_spec(write_spec(MLP), ["vars.width=32", "model.layers.2.out_features=5", "seed=7"])
    assert spec.model.layers[0].out_features == 32
    assert spec.model.layers[2].out_features == 5
    assert spec.head.seed == 7


def test_override_with_a_typo_names_the_flag_and_suggests(write_spec):
    assert errors(write_spec(MLP), ["model.layerz.0.out_features=3"]) == [
        "--set model.layerz.0.out_features=3: error: no key 'layerz' under model; did you mean 'layers'?"
    ]


def test_override_with_a_bad_value_points_at_the_flag(write_spec):
    assert errors(write_spec(MLP), ["model.layers.0.out_features=yes"]) == [
        "--set model.layers.0.out_features=yes: error: 'out_features' must be an integer, got 'yes'"
    ]


def test_override_without_equals(write_spec):
    assert errors(write_spec(MLP), ["seed"]) == ["--set seed: error: expected --set path.to.key=value"]


def test_index_past_the_end_of_a_list(write_spec):
    (msg,) = errors(write_spec(MLP), ["model.layers.9.out_features=3"])
    assert "'9' is not an index of the list at model.layers (it has 3 items)" in msg


def test_newer_format_version_says_which_is_needed(write_spec):
    (msg,) = errors(write_spec(MLP.replace("netcfg: 1", "netcfg: 3")))
    assert msg.endswith("error: this spec is written in netcfg format 3; this netcfg reads format 1: upgrade netcfg")


def test_all_problems_are_reported_at_once(write_spec):
    text = MLP.replace("out_features: 3", "out_features: 0").replace("type: relu", "type: rleu")
    text = text.replace("input: {shape: [2, 4]}", "input: {shape: [2, 4], dtyp: float32}")
    messages = errors(write_spec(text))
    assert len(messages) == 3
    assert any("unknown key 'dtyp' in 'input'; did you mean 'dtype'?" in m for m in messages)
    assert any("unknown layer type 'rleu'; did you mean 'relu'?" in m for m in messages)
    assert any("'out_features' must be greater than or equal to 1, got 0" in m for m in messages)


BLOCKS = """\
netcfg: 1
input: {shape: [2, 4]}
blocks:
  unit:
    args: {width: ~, act: relu, extra: false}
    body:
      type: sequential
      layers:
        - {type: linear, out_features: "${width}"}
        - {type: "${act}"}
        - {if: "${extra}", type: dropout, p: 0.1}
model:
  type: repeat
  times: 3
  body: {type: block, block: unit, args: {width: "${8 * (index + 1)}", extra: "${index == 2}"}}
"""


def test_repeat_and_blocks_expand_with_index_and_defaults(write_spec):
    spec = load_spec(write_spec(BLOCKS))
    copies = spec.model.layers
    assert [c.layers[0].out_features for c in copies] == [8, 16, 24]
    assert [c.layers[1].type for c in copies] == ["relu"] * 3
    assert [len(c.layers) for c in copies] == [2, 2, 3]


def test_block_argument_problems(write_spec):
    text = BLOCKS.replace('width: "${8 * (index + 1)}", ', "widht: 3, ")
    messages = errors(write_spec(text))
    assert any("block 'unit' has no argument 'widht'; did you mean 'width'?" in m for m in messages)
    assert any("block 'unit' needs argument 'width'" in m for m in messages)


def test_a_block_that_instantiates_itself_is_refused(write_spec):
    text = """\
netcfg: 1
input: {shape: [2, 4]}
blocks:
  a: {body: {type: sequential, layers: [{type: block, block: b}]}}
  b: {body: {type: block, block: a}}
model: {type: block, block: a}
"""
    (msg,) = errors(write_spec(text))
    assert "block 'a' instantiates itself (a -> b -> a)" in msg


def test_error_inside_a_template_points_into_the_template(write_spec):
    text = BLOCKS.replace('{type: linear, out_features: "${width}"}', '{type: linear, out_features: "${widht}"}')
    (msg,) = errors(write_spec(text))
    assert ":9:40: error: unknown name 'widht' in expression (names available: act, extra, width)" in msg


def test_resolved_data_validates_to_the_same_spec(write_spec):
    spec = load_spec(write_spec(BLOCKS))
    again = load_spec_data(spec.data, "again")
    assert again.data == spec.data
    assert again.model == spec.model


def test_missing_file_and_directory_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(InputError, match="is a directory"):
        load_spec(tmp_path)


def test_a_spec_must_be_a_mapping(write_spec):
    (msg,) = errors(write_spec("- 1\n- 2\n"))
    assert "a spec is a mapping with keys netcfg, input and model" in msg


def test_bool_is_not_an_int_and_int_is_a_float(write_spec):
    text = MLP.replace("out_features: 3", "out_features: true")
    (msg,) = errors(write_spec(text))
    assert msg.endswith("error: 'out_features' must be an integer, got true")
    ok = MLP.replace("{type: relu}", "{type: dropout, p: 0}")
    assert load_spec(write_spec(ok)).model.layers[1].p == 0.0


VIA = """\
netcfg: 1
vars: {w: 8, act: relu, n: 2, deep: true, other: 4}
input: {shape: ["${w}", 4]}
blocks:
  inner:
    args: {k: 1}
    body: {type: linear, out_features: "${k}"}
  outer:
    args: {width: null}
    body:
      type: sequential
      layers:
        - {type: linear, out_features: "${width}"}
        - {type: "${act}"}
        - {if: "${deep}", type: linear, out_features: "${other}"}
        - {type: block, block: inner, args: {k: 2}}
model:
  type: sequential
  layers:
    - {type: block, block: outer, args: {width: "${w // 2}"}}
    - {type: repeat, times: "${n}", body: {type: linear, out_features: 3}}
"""


_W = "must be greater than or equal to 1, got"


@pytest.mark.parametrize(
    "flag, expected",
    [
        ("vars.w=-4", [f"3:17: error: 'input.shape.0' {_W} -4 (from --set vars.w=-4)",
                       f"13:40: error: 'out_features' {_W} -2 (from block 'outer' at line 20, --set vars.w=-4)"]),
        ("vars.act=relux", ["14:18: error: unknown layer type 'relux'; did you mean 'relu'? "
                            "(from --set vars.act=relux)"]),
        ("vars.n=0", [f"21:29: error: 'times' {_W} 0 (from --set vars.n=0)"]),
        ("vars.deep=3", ["15:16: error: 'if' must be true or false, got 3 (from --set vars.deep=3)"]),
    ],
)  # fmt: skip
def test_an_error_from_a_set_var_names_the_flag_too(write_spec, flag, expected):
    path = write_spec(VIA)
    assert errors(path, [flag]) == [f"{path}:{line}" for line in expected]


def test_only_values_computed_from_the_set_var_name_the_flag(write_spec):
    # 'other' is set on the command line but is fine; w's bad value is in the file.
    path = write_spec(VIA.replace("{w: 8,", "{w: -4,"))
    assert errors(path, ["vars.other=4"]) == [
        f"{path}:3:17: error: 'input.shape.0' must be greater than or equal to 1, got -4",
        f"{path}:13:40: error: 'out_features' {_W} -2 (from block 'outer' at line 20)",
    ]


def test_a_nested_block_call_does_not_inherit_the_outer_calls_flags(write_spec):
    spec = load_spec(write_spec(VIA), ["vars.w=6"])
    outer_linear = ("model", "layers", 0, "layers", 0, "out_features")
    inner_linear = ("model", "layers", 0, "layers", 3, "out_features")
    assert spec.locs[outer_linear].via == "block 'outer' at line 20, --set vars.w=6"
    assert spec.locs[inner_linear].via == "block 'inner' at line 16"  # its argument is the template's own


def test_a_shape_error_at_build_names_the_set_var(write_spec):
    from netcfg.building.builder import build_spec
    from netcfg.errors import BuildError

    path = write_spec(MLP.replace('out_features: "${width}"}', 'in_features: "${width}", out_features: 8}'))
    with pytest.raises(BuildError) as err:
        build_spec(load_spec(path, ["vars.width=5"]), device="meta")
    assert [str(d) for d in err.value.diagnostics] == [
        f"{path}:7:35: error: layer '0' (linear) with input [2, 4]: expected input [2, 5] (in_features=5), "
        "got [2, 4] (from --set vars.width=5)"
    ]


def test_a_block_default_may_be_an_expression_over_the_vars(write_spec):
    text = """\
netcfg: 1
vars: {w: 8}
input: {shape: [2, 4]}
blocks:
  unit:
    args: {width: "${w * 2}", bad: "${nope}"}
    body: {type: linear, out_features: "${width}"}
model:
  type: sequential
  layers: [{type: block, block: unit, args: {bad: 1}}, {type: block, block: unit, args: {bad: 1, width: 3}}]
"""
    spec = load_spec(write_spec(text), ["vars.w=5"])
    assert [layer.out_features for layer in spec.model.layers] == [10, 3]
    path = write_spec(text.replace("args: {bad: 1}}", "args: {}}"))
    assert errors(path) == [f"{path}:6:36: error: unknown name 'nope' in expression (names available: w, width)"]


def test_a_device_index_in_another_script_is_refused_at_the_spec(write_spec):
    # U+0663 is ARABIC-INDIC DIGIT THREE: re's \d accepts it, torch does not
    text = 'netcfg: 1\ninput: {shape: [1, 2]}\ndevice: "cuda:\u0663"\nmodel: {type: linear, out_features: 2}\n'
    path = write_spec(text)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert ":3:9: error:" in str(err.value.diagnostics[0])


def test_a_list_as_a_node_name_is_one_located_error(write_spec):
    layers = "[{type: relu, name: [1, 2]}]"
    path = write_spec(f"netcfg: 1\ninput: {{shape: [1, 4]}}\nmodel: {{type: sequential, layers: {layers}}}\n")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert [d.message for d in err.value.diagnostics] == ["'name' must be a string, got a list"]
