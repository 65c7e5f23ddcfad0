import math
import time

import pytest

from netcfg.errors import SpecError
from netcfg.spec.yaml_source import read_yaml
from tests.limits import measure


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
    with pytest.raises(SpecError) as err:
        read_yaml("\n".join(lines), "f.yaml")
    assert str(err.value) == "f.yaml:6:5: error: the document expands to more than 200,000 values (aliases counted)"


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
    with pytest.raises(SpecError) as err:
        read_yaml("a: &x [*x]\n", "f.yaml")
    assert str(err.value) == "f.yaml:1:8: error: an alias refers to a node that contains it"


# ---------------------------------------------------------------- budgets, counted from the parser's events


def test_a_10_mb_flat_list_is_refused_while_it_is_parsed():
    """Counted from the events: refused after 200,000 of them, never composed (it took 27 s and 2 GB)."""
    got = measure(
        "from netcfg.spec.yaml_source import read_yaml\ntext = 'x: [' + '1,' * 4_900_000 + '1]'",
        "read_yaml(text, 'f.yaml')",
    )
    assert got.error == "f.yaml:1:4: error: the document expands to more than 200,000 values (aliases counted)"
    assert got.seconds < 5
    assert got.growth_mib < 100


def test_aliases_of_a_large_string_count_its_bytes():
    """1,000 aliases of a 1 MB string are 1,001 values but 1 GB of text once expanded."""
    text = "s: &s " + "a" * 2**20 + "\nx:\n" + "  - *s\n" * 1000
    start = time.perf_counter()
    with pytest.raises(SpecError) as err:
        read_yaml(text, "f.yaml")
    assert time.perf_counter() - start < 5
    assert str(err.value) == "f.yaml:3:3: error: the document expands to more than 64 MiB of text (aliases counted)"


def test_text_under_the_limit_is_read():
    text = "s: &s " + "a" * 2**20 + "\nx: [" + ", ".join(["*s"] * 60) + "]\n"
    assert len(read_yaml(text, "f.yaml").data["x"]) == 60


def test_the_limits_hold_with_pythons_parser_too(monkeypatch):
    """The pure-Python parser (used when libyaml is absent or fails) is counted the same way."""
    from netcfg.spec import yaml_source

    monkeypatch.setattr(yaml_source, "_FastLoader", yaml_source._Loader)
    text = "s: &s " + "a" * 2**16 + "\nx: [" + ", ".join(["*s"] * 1100) + "]\n"
    with pytest.raises(SpecError) as err:
        read_yaml(text, "f.yaml")
    assert str(err.value) == "f.yaml:2:4: error: the document expands to more than 64 MiB of text (aliases counted)"


def test_an_alias_of_a_deep_node_deep_in_the_document_is_refused():
    deep = "[" * 60 + "]" * 60
    with pytest.raises(SpecError, match="nesting deeper than 100 levels"):
        read_yaml(f"a: &a {deep}\nb: " + "[" * 60 + "*a" + "]" * 60, "f.yaml")


@pytest.mark.parametrize(
    ("tail", "where", "detailed", "libyaml"),
    [
        ("y: [\n", "3:1", "expected the node content, but found '<stream end>'", "did not find expected node content"),
        ("\tb: 2\n", "2:1", "found character '\\t' that cannot start any token (indent with spaces, not tabs)",
         "found a tab character that violates indentation (indent with spaces, not tabs) "
         "(in the plain scalar that starts at line 1, column 4)"),
        ("y: *nowhere\n", "2:4", "found undefined alias 'nowhere'", "found undefined alias"),
    ],
)  # fmt: skip
def test_a_large_file_libyaml_refuses_gets_its_message_at_the_same_place_at_once(tail, where, detailed, libyaml):
    """PyYAML's own parser (2.5 us a character: seconds for a megabyte) reads again only a file
    of up to 256 KiB, for its more detailed message; a larger one gets libyaml's."""
    for words, message in ((2**10, detailed), (2**19, libyaml)):
        start = time.process_time()
        with pytest.raises(SpecError) as err:
            read_yaml("x: " + "a " * words + "\n" + tail, "f.yaml")
        assert time.process_time() - start < 0.5
        assert str(err.value) == f"f.yaml:{where}: error: invalid YAML: {message}"


def test_a_control_character_after_wide_characters_in_a_large_file_is_placed_in_characters():
    """libyaml counts bytes of UTF-8 where PyYAML counts characters."""
    with pytest.raises(SpecError) as err:
        read_yaml("x: " + "é" * 2**18 + "\ny: aé\x07\n", "f.yaml")
    assert str(err.value) == "f.yaml:2:6: error: control character '\\x07' (#x0007) is not allowed in YAML"
