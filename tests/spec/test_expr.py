import pytest

from netcfg.spec.expr import ExprError, evaluate, substitute


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
