import math

import pytest

from netcfg.errors import SpecError
from netcfg.spec.yaml_source import read_yaml


def data(text):
    return read_yaml(text, "f.yaml").data


@pytest.mark.parametrize(
    "text, expected",
    [
        ("no", "no"), ("on", "on"), ("y", "y"), ("off", "off"), ("yes", "yes"),
        ("1e-3", 1e-3), ("1E5", 1e5), ("017", 17), ("0x10", 16), ("0o17", 15),
        ("1_000", "1_000"), ("3:25:45", "3:25:45"), ("true", True), ("False", False),
        ("~", None), ("null", None), (".5", 0.5), ("-.inf", -math.inf), ("'12'", "12"),
    ],
)  # fmt: skip
def test_yaml_1_2_scalars(text, expected):
    assert data(f"v: {text}") == {"v": expected}


def test_nan_is_a_float():
    assert math.isnan(data("v: .nan")["v"])


def test_locations_are_one_based_line_and_column():
    doc = read_yaml("a:\n  b: [1, 2]\n", "f.yaml")
    assert str(doc.loc(("a", "b", 1))) == "f.yaml:2:10"
    assert str(doc.key_loc(("a", "b"))) == "f.yaml:2:3"


def test_duplicate_keys_quote_both_lines():
    with pytest.raises(SpecError) as err:
        read_yaml("a: 1\nb: 2\na: 3\n", "f.yaml")
    assert str(err.value) == "f.yaml:3:1: error: duplicate key 'a' (first defined at line 1)"


def test_python_tags_are_rejected_and_never_constructed(tmp_path):
    canary = tmp_path / "canary"
    text = f"a: !!python/object/apply:os.system ['touch {canary}']\n"
    with pytest.raises(SpecError) as err:
        read_yaml(text, "f.yaml")
    assert "unsupported YAML tag '!!python/object/apply:os.system'" in str(err.value)
    assert not canary.exists()


def test_alias_bomb_is_capped():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    with pytest.raises(SpecError, match="alias bomb"):
        read_yaml("\n".join(lines), "f.yaml")


def test_deep_nesting_is_an_error_not_a_recursion_error():
    with pytest.raises(SpecError, match="nesting deeper"):
        read_yaml("[" * 5000 + "]" * 5000, "f.yaml")


def test_syntax_error_has_a_location():
    with pytest.raises(SpecError) as err:
        read_yaml("a: [1, 2\nb: 3\n", "f.yaml")
    assert str(err.value).startswith("f.yaml:")


def test_deep_block_nesting_is_refused_where_it_happens():
    text = "".join("  " * i + "a:\n" for i in range(10_000)) + "  " * 10_000 + "b: 1\n"
    with pytest.raises(SpecError) as err:
        read_yaml(text, "f.yaml")
    assert str(err.value) == "f.yaml:101:201: error: nesting deeper than 100 levels"


def test_self_referencing_alias_is_an_error():
    with pytest.raises(SpecError):
        read_yaml("a: &x [*x]\n", "f.yaml")
