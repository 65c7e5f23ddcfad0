import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from netcfg.spec.expr import MAX_LENGTH, ExprError, bind_later, evaluate, shape_names, substitute


@pytest.mark.parametrize(
    "text, scope, expected",
    [
        ("1 + 2 * 3", {}, 7),
        ("w * 4", {"w": 64}, 256),
        ("2 if index == 0 else 1", {"index": 0}, 2),
        ("2 if index == 0 else 1", {"index": 3}, 1),
        ("index == 0 and (stride != 1 or block == 'bottleneck')", {"index": 0, "stride": 1, "block": "basic"}, False),
        ("0.02 / (2 * n) ** 0.5", {"n": 2}, 0.01),
        ("max(a, 3) - min(a, 3)", {"a": 5}, 2),
        ("not flag", {"flag": False}, True),
        ("-x // 2", {"x": 5}, -3),
        ("1 < x <= 3", {"x": 3}, True),
    ],
)
def test_evaluates_the_closed_language(text, scope, expected):
    assert evaluate(text, scope) == pytest.approx(expected)


def test_whole_string_keeps_its_type_and_parts_are_interpolated():
    assert substitute("${w}", {"w": 3}) == 3
    assert substitute("block_${i}_of_${n}", {"i": 1, "n": 4}) == "block_1_of_4"


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os')",
        "x.__class__",
        "open('f')",
        "[1, 2][0]",
        "(lambda: 1)()",
        "eval('1')",
        "{'a': 1}",
        "2 ** 1000",
    ],
)
def test_refuses_everything_else(text):
    with pytest.raises(ExprError):
        evaluate(text, {"x": 1})


def test_unknown_name_lists_the_names_in_scope():
    with pytest.raises(ExprError, match=r"unknown name 'widht'.*names available: width"):
        evaluate("widht * 2", {"width": 1})


def test_division_by_zero_is_an_expression_error():
    with pytest.raises(ExprError, match="cannot compute"):
        evaluate("1 / n", {"n": 0})


@pytest.mark.parametrize(
    "text, scope, expected",
    [
        ("n > 0 and 12 // n == 3", {"n": 0}, False),
        ("n > 0 and 12 // n == 3", {"n": 4}, True),
        ("n == 0 or 12 // n == 3", {"n": 0}, True),
        ("False and boom", {}, False),
        ("True or boom", {}, True),
        ("False and 1 / 0 == 1", {}, False),
        ("True or 1 / 0 == 1", {}, True),
        ("True and False and 1 / 0 == 1", {}, False),
        ("False or True or 1 / 0 == 1", {}, True),
    ],
)
def test_and_or_short_circuit(text, scope, expected):
    # The right sides would raise (division by zero, unknown name 'boom') if they were evaluated.
    assert evaluate(text, scope) is expected


@pytest.mark.parametrize("text", ["True and 1 / 0 == 1", "False or boom"])
def test_and_or_evaluate_the_right_side_when_it_decides(text):
    with pytest.raises(ExprError):
        evaluate(text, {})


@pytest.mark.parametrize(
    "text, scope, message",
    [
        ("2 and 3", {}, "'and' on an int (2) in '2 and 3'"),
        ("True and x", {"x": 1.5}, "'and' on a float (1.5) in 'True and x'"),
        ("x or False", {"x": "a"}, "'or' on a string ('a') in 'x or False'"),
        ("False or x", {"x": None}, "'or' on None in 'False or x'"),
        ("not 3", {}, "'not' on an int (3) in 'not 3'"),
        ("not x", {"x": ""}, "'not' on a string ('') in 'not x'"),
    ],
)
def test_and_or_not_take_booleans_only(text, scope, message):
    with pytest.raises(ExprError) as info:
        evaluate(text, scope)
    assert str(info.value) == f"{message}: and/or/not take true/false only (compare instead, e.g. 'x != 0')"


def test_comparisons_feed_and_or_not():
    assert evaluate("a > 0 and b < 3", {"a": 1, "b": 2}) is True
    assert evaluate("not (a > 0) or b == 2", {"a": 1, "b": 2}) is True


def _bool_trees(names):
    leaves = st.sampled_from(["True", "False", *names])
    return st.recursive(
        leaves,
        lambda sub: st.one_of(
            sub.map(lambda a: f"not ({a})"),
            st.tuples(sub, sub).map(lambda ab: f"({ab[0]}) and ({ab[1]})"),
            st.tuples(sub, sub).map(lambda ab: f"({ab[0]}) or ({ab[1]})"),
        ),
        max_leaves=12,
    )


@given(tree=_bool_trees(["p", "q", "r"]), p=st.booleans(), q=st.booleans(), r=st.booleans())
@settings(max_examples=300, deadline=None)
def test_boolean_trees_match_python(tree, p, q, r):
    assume(len(tree) <= MAX_LENGTH)  # longer ones are refused before evaluation
    scope = {"p": p, "q": q, "r": r}
    # Python itself is the oracle, on text generated here from booleans and and/or/not only.
    assert evaluate(tree, scope) is eval(tree, {"__builtins__": {}}, scope)


@pytest.mark.parametrize(
    "text, scope",
    [
        ("${s}${s}", {"s": "a" * 6000}),  # each piece is under the cap, the joined string is not
        ("${'a' * 9999}" * 100, {}),  # 1 MB from 1.3 KB
        ("x" * 9990 + "${s}", {"s": "a" * 20}),  # the text around the pieces counts
    ],
)
def test_an_interpolated_string_has_the_cap_of_a_piece(text, scope):
    with pytest.raises(ExprError, match="an interpolated string longer than 10,000 characters"):
        substitute(text, scope)


def test_a_whole_expression_naming_a_long_string_is_capped():
    assert substitute("${s}", {"s": "a" * 10_000}) == "a" * 10_000
    with pytest.raises(ExprError, match="a string longer than 10,000 characters"):
        substitute("${s}", {"s": "a" * 10_001})


# ---------------------------------------------------------------- round, ceil, floor, log2


@pytest.mark.parametrize(
    "text, expected",
    [
        ("round(2.5)", round(2.5)),  # ties to even, as Python: 2
        ("round(3.5)", round(3.5)),
        ("round(-2.5)", round(-2.5)),
        ("round(2.675, 2)", round(2.675, 2)),
        ("round(1234, -2)", round(1234, -2)),
        ("ceil(2.1)", 3),
        ("ceil(-2.1)", -2),
        ("floor(2.9)", 2),
        ("floor(-2.1)", -3),
        ("log2(1024)", 10.0),
        ("log2(3)", math.log2(3)),
    ],
)
def test_rounding_functions_are_pythons(text, expected):
    result = evaluate(text, {})
    assert result == expected and type(result) is type(expected)


def test_round_of_one_argument_is_an_integer():
    assert evaluate("round(2.5)", {}) == 2 and isinstance(evaluate("round(7.9)", {}), int)
    assert isinstance(evaluate("ceil(2.1)", {}), int) and isinstance(evaluate("floor(2.9)", {}), int)


@pytest.mark.parametrize(
    "text, message",
    [
        ("round(True)", r"round\(\) takes numbers, got a bool"),
        ("ceil('a')", r"ceil\(\) takes numbers, got a string"),
        ("log2(0)", r"cannot compute 'log2\(0\)'"),
        ("log2(-1)", r"cannot compute"),
        ("ceil(1e308 * 10)", r"cannot compute"),  # infinity has no integer
        ("floor()", r"floor\(\) takes 1 argument, got 0"),
        ("round(1, 2, 3)", r"round\(\) takes 1 or 2 arguments, got 3"),
        ("min(3)", r"min\(\) takes 2 or more arguments, got 1"),
        ("round(x=1)", r"is not allowed"),
        ("ceil(1e308 * 1e308)", r"cannot compute"),
    ],
)
def test_rounding_functions_refuse_what_python_would_not_mean(text, message):
    with pytest.raises(ExprError, match=message):
        evaluate(text, {})


def test_floor_of_a_huge_float_keeps_the_integer_cap():
    assert evaluate("floor(1.7e308)", {}) == int(1.7e308)
    with pytest.raises(ExprError, match="larger than 2\\*\\*1024"):
        evaluate("floor(1.7e308) * 2 ** 64", {})


def _torchvision_regnet_widths(depth: int, w_0: int, w_a: float, w_m: float) -> list[int]:
    """torchvision.models.regnet.BlockParams.from_init_params, the per-block widths (float32, as there)."""
    torch = pytest.importorskip("torch")
    widths_cont = torch.arange(depth) * w_a + w_0
    block_capacity = torch.round(torch.log(widths_cont / w_0) / math.log(w_m))
    return (torch.round(torch.divide(w_0 * torch.pow(w_m, block_capacity), 8)) * 8).int().tolist()


REGNET_WIDTH = "round(w_0 * w_m ** round(log2((index * w_a + w_0) / w_0) / log2(w_m)) / 8) * 8"


@pytest.mark.parametrize(
    "depth, w_0, w_a, w_m",
    [(16, 48, 27.89, 2.09), (14, 56, 38.84, 2.4), (27, 48, 20.71, 2.65), (21, 80, 42.63, 2.66),
     (17, 192, 76.82, 2.19), (18, 200, 106.23, 2.48), (20, 232, 115.89, 2.53), (22, 24, 24.48, 2.54)],
)  # fmt: skip
def test_regnet_width_formula(depth, w_0, w_a, w_m):
    # torchvision's RegNet configs (regnet_y_400mf ... regnet_x_400mf): one expression per block.
    scope = {"w_0": w_0, "w_a": w_a, "w_m": w_m}
    widths = [evaluate(REGNET_WIDTH, {**scope, "index": i}) for i in range(depth)]
    assert widths == _torchvision_regnet_widths(depth, w_0, w_a, w_m)


def test_regnet_y_400mf_stage_widths():
    widths = [evaluate(REGNET_WIDTH, {"w_0": 48, "w_a": 27.89, "w_m": 2.09, "index": i}) for i in range(16)]
    assert sorted(set(widths)) == [48, 104, 208, 440]  # the RegNetY-400MF paper's (and torchvision's) stages
    assert [widths.count(w) for w in (48, 104, 208, 440)] == [1, 3, 6, 6]


def _make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """torchvision.models._utils._make_divisible."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


MAKE_DIVISIBLE = "max(d, int(v + d / 2) // d * d) + (d if max(d, int(v + d / 2) // d * d) < 0.9 * v else 0)"


@given(st.floats(0.5, 5000, allow_nan=False), st.sampled_from([1, 2, 4, 8, 16]))
@settings(max_examples=300, deadline=None)
def test_make_divisible_as_an_expression(v, d):
    assert evaluate(MAKE_DIVISIBLE, {"v": v, "d": d}) == _make_divisible(v, d)


# ---------------------------------------------------------------- names known when building


def test_shape_names_by_rank():
    assert shape_names((2, 6)) == {"in_channels": 6, "in_features": 6}
    assert shape_names((2, 16, 7)) == {"in_channels": 16, "in_features": 7}
    assert shape_names((2, 16, 5, 7)) == {"in_channels": 16, "in_features": 7, "in_height": 5, "in_width": 7}
    assert set(shape_names((2, 3, 4, 5, 6))) == {"in_channels", "in_features"}


def test_bind_later_writes_in_the_other_names_only():
    assert bind_later("${in_channels // g}", {"g": 2}) == "${in_channels // 2}"
    assert bind_later("${max(in_features, base)}", {"base": 3}) == "${max(in_features, 3)}"
    assert bind_later("${g ** 2 + in_width}", {"g": -3}) == "${(-3) ** 2 + in_width}"  # not -3 ** 2
    assert bind_later("${in_channels if mode == 'half' else 1}", {"mode": "half"}) == (
        "${in_channels if 'half' == 'half' else 1}"
    )
    assert bind_later("${in_channels * 2}", {"in_channels": 5}) is None  # a var of that name: computed now
    assert bind_later("${width * 2}", {"width": 5}) is None
    assert bind_later("c${in_channels}", {}) is None  # only a whole-string expression is kept


@given(st.integers(-(2**40), 2**40), st.floats(-1e6, 1e6, allow_nan=False), st.integers(1, 4096), st.integers(1, 4096))
@settings(max_examples=200, deadline=None)
def test_bind_later_then_the_shape_computes_what_all_names_at_once_do(a, b, channels, features):
    text = "${max(in_channels // 2 + a, 1) * b - in_features % 7 + (a if b < 0 else -a)}"
    shape = {"in_channels": channels, "in_features": features}
    bound = bind_later(text, {"a": a, "b": b})
    assert substitute(bound, shape) == substitute(text, {"a": a, "b": b, **shape})


@pytest.mark.parametrize(
    "text, scope, message",
    [
        ("${in_channels * widht}", {"width": 1}, "unknown name 'widht'"),
        ("${in_channels * s}", {"s": "x" * 300}, "longer than 200 characters once the values"),
        ("${in_channels * f}", {"f": float("inf")}, "'f' is inf"),
        ("${in_channels * xs}", {"xs": [1, 2]}, "reads numbers, strings and true/false only"),
    ],
)
def test_bind_later_refuses_now_what_it_cannot_keep(text, scope, message):
    with pytest.raises(ExprError, match=message):
        bind_later(text, scope)


def test_a_build_time_name_elsewhere_says_where_it_may_be_read():
    with pytest.raises(ExprError, match=r"'in_channels' is known only when building .*a layer's own numeric"):
        evaluate("in_channels * 2", {"w": 1})
