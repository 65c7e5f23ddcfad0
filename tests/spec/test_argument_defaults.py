"""Block argument defaults computed from the other arguments (issue 12, expressions)."""

import pytest

from netcfg.errors import SpecError
from netcfg.spec.loader import load_spec

UNIT = """\
netcfg: 1
vars: {base: 2}
blocks:
  unit:
    args: {planes: ~, width: "${planes * expansion}", expansion: "${base * 2}", out: "${width + 1}"}
    body: {type: linear, out_features: "${out}"}
input: {shape: [2, 4]}
model:
  type: sequential
  layers:
"""


def load(write_spec, calls: list[str], overrides=()):
    return load_spec(write_spec(UNIT + "".join(f"    - {c}\n" for c in calls)), overrides)


def errors(write_spec, calls: list[str], overrides=()):
    with pytest.raises(SpecError) as err:
        load(write_spec, calls, overrides)
    return [str(d) for d in err.value.diagnostics]


def test_defaults_are_computed_after_the_arguments_they_read(write_spec):
    # out reads width, which reads planes and expansion, written after it; each use computes its own.
    spec = load(write_spec, [
        "{type: block, block: unit, args: {planes: 3}}",
        "{type: block, block: unit, args: {planes: 3, expansion: 1}}",
        "{type: block, block: unit, args: {planes: 3, width: 100}}",
    ])  # fmt: skip
    base = 2
    expected = [3 * (base * 2) + 1, 3 * 1 + 1, 100 + 1]
    assert [layer.out_features for layer in spec.model.layers] == expected


def test_an_overridden_var_reaches_the_defaults_computed_from_it(write_spec):
    spec = load(write_spec, ["{type: block, block: unit, args: {planes: 3}}"], ["vars.base=5"])
    assert spec.model.layers[0].out_features == 3 * 5 * 2 + 1


def test_a_default_reading_its_own_name_reads_the_var(write_spec):
    # Format-1 specs wrote `width: ${width}` for "the var width by default": still so.
    text = UNIT.replace('out: "${width + 1}"', 'out: "${out}"').replace("vars: {base: 2}", "vars: {base: 2, out: 7}")
    spec = load_spec(write_spec(text + "    - {type: block, block: unit, args: {planes: 1}}\n"))
    assert spec.model.layers[0].out_features == 7


def test_an_error_in_a_default_names_the_use_that_computed_it(write_spec):
    text = UNIT.replace('"${base * 2}"', '"${base * 8 // planes}"')
    path = write_spec(text + "    - {type: block, block: unit, args: {planes: 1}}\n"
                             "    - {type: block, block: unit, args: {planes: 0}}\n")  # fmt: skip
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert [str(d) for d in err.value.diagnostics] == [
        f"{path}:5:66: error: cannot compute 'base * 8 // planes': integer division or modulo by zero "
        "(from block 'unit' at line 12)"
    ]


CYCLE = """\
netcfg: 1
blocks:
  bad:
    args: {a: "${b}", b: "${c + 1}", c: "${a * 2}"}
    body: {type: linear, out_features: "${a}"}
input: {shape: [2, 4]}
model:
  type: sequential
  layers:
    - {type: block, block: bad}
    - {type: block, block: bad}
"""


def test_a_cycle_between_defaults_is_one_error_naming_the_arguments(write_spec):
    path = write_spec(CYCLE)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert [str(d) for d in err.value.diagnostics] == [
        f"{path}:4:15: error: arguments of block 'bad' read each other in a cycle: a -> b -> c -> a "
        "(give one of them in the call's `args`)"
    ]


def test_a_call_giving_one_argument_of_the_cycle_breaks_it(write_spec):
    calls = "block: bad}\n    - {type: block, block: bad}"
    spec = load_spec(write_spec(CYCLE.replace(calls, "block: bad, args: {c: 4}}")))
    assert spec.model.layers[0].out_features == 4 + 1


def test_many_chained_defaults_are_ordered_without_recursion(write_spec):
    n = 3000
    args = ", ".join([f'a{i}: "${{a{i + 1} + 1}}"' for i in range(n)] + [f"a{n}: 1"])
    text = f"netcfg: 1\nblocks:\n  b:\n    args: {{{args}}}\n    body: {{type: linear, out_features: '${{a0}}'}}\n"
    spec = load_spec(write_spec(text + "input: {shape: [2, 4]}\nmodel: {type: block, block: b}\n"))
    assert spec.model.out_features == n + 1


MOBILENET = """\
netcfg: 1
vars: {width_mult: 0.75}
blocks:
  divisible:  # torchvision's _make_divisible(v, d) as argument defaults
    args:
      v: ~
      d: 8
      rounded: "${max(d, int(v + d / 2) // d * d)}"
      out: "${rounded + d if rounded < 0.9 * v else rounded}"
    body: {type: linear, out_features: "${out}"}
input: {shape: [2, 4]}
model:
  type: sequential
  layers:
"""


def _make_divisible(v: float, divisor: int) -> int:
    """torchvision.models._utils._make_divisible (min_value None)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def test_mobilenets_make_divisible_as_argument_defaults(write_spec):
    widths = [16, 24, 32, 40, 80, 112, 160, 960, 1280, 30]
    calls = "".join(f"    - {{type: block, block: divisible, args: {{v: '${{{w} * width_mult}}'}}}}\n" for w in widths)
    for mult in (0.75, 0.35, 1.3):
        spec = load_spec(write_spec(MOBILENET + calls), [f"vars.width_mult={mult}"])
        assert [layer.out_features for layer in spec.model.layers] == [_make_divisible(w * mult, 8) for w in widths]
