"""Bad checkpoint files: `netcfg load` and `netcfg inspect` print one exact line, exit 2, no traceback.

The files come from tests/checkpoint/corpus.py, made at test time from one valid netcfg
checkpoint. Each expected line below was read as a user would read it; a message that
is wrong or unclear, and a crash, is not blessed: the test states the message the user
should get and is marked xfail(strict=True) with the reason.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import zipfile

import pytest
import torch
from typer.testing import CliRunner

from netcfg.cli.app import app
from netcfg.errors import NetcfgError
from netcfg.io.shards import read_checkpoint
from tests.checkpoint import corpus
from tests.conftest import ROOT

SAME = object()
"""inspect prints the same line as load."""

PICKLE = "a Python pickle (torch.save's legacy format): netcfg never unpickles; use safetensors"
ZIP = "a zip archive (torch.save's format, which holds a pickle): netcfg never unpickles; use safetensors"

# case -> (load's line, inspect's line); `{hlen}` and `{size}` are the valid file's header
# length and size (they depend on the version strings in its metadata). None: exit 0.
EXPECTED: dict[str, tuple[str | None, object]] = {
    "truncated_in_length": ("truncated: 5 bytes, shorter than the 8-byte header length", SAME),
    "truncated_in_header": ("header length {hlen} runs past the end of the file (400 bytes): truncated?", SAME),
    "truncated_in_data": ("tensors need 31,784 data bytes but the file has 1,000: truncated?", SAME),
    "truncated_last_byte": ("tensors need 31,784 data bytes but the file has 31,783: truncated?", SAME),
    "truncated_lookalike": ("header length 896 runs past the end of the file (500 bytes): truncated?", SAME),
    "header_past_end": ("header length 1,000,000 runs past the end of the file ({size:,} bytes): truncated?", SAME),
    "header_over_cap": (
        "header length 1,099,511,627,776 exceeds the 100,000,000-byte limit (corrupt or not safetensors)",
        SAME,
    ),
    "header_too_short": ("header length 1 is too short for a JSON header", SAME),
    "header_not_utf8": ("header is not UTF-8 text (corrupt or not safetensors)", SAME),
    "header_not_json": ("header is not valid JSON (Expecting property name enclosed in double quotes at byte 1)", SAME),
    "header_not_object": ("header is not a JSON object", SAME),
    "header_deeply_nested": ("header nests too deeply to be a safetensors header", SAME),
    "overlap": ("tensor '2.bias' overlaps the tensor before it (offset 21,500)", SAME),
    "hole": ("a hole of 8 bytes before tensor '2.bias'", SAME),
    "extra_bytes": ("16 bytes after the last tensor (corrupt or not safetensors)", SAME),
    "unknown_dtype": ("tensor '0.bias': unknown dtype 'F33'", SAME),
    "dtype_not_string": ("tensor '0.bias': unknown dtype ['F32']", SAME),
    "size_mismatch": ("tensor '0.weight': F32 [256, 21] needs 21,504 bytes, its offsets give 20,480", SAME),
    "shape_overflow": (
        "tensor '0.bias': shape [2147483648, 2147483648, 2147483648] has more than 2**62 elements",
        SAME,
    ),
    "negative_dim": ("tensor '0.bias': shape must be a list of non-negative integers, got [-256]", SAME),
    "bad_offsets": (
        "tensor '0.bias': data_offsets must be [start, end] with 0 <= start <= end, got [1024, 0]",
        SAME,
    ),
    "entry_missing_key": ("tensor '0.bias': an entry needs exactly dtype, shape and data_offsets", SAME),
    "duplicate_name": ("duplicate tensor name '0.bias' in the header", SAME),
    "duplicate_inner_key": ("tensor '0.bias': duplicate key 'dtype'", SAME),
    "duplicate_metadata": ("duplicate key '__metadata__' in the header", SAME),
    "metadata_not_str_map": ("__metadata__ must map strings to strings: 'netcfg.seed' is 0", SAME),
    "metadata_not_object": ("__metadata__ must map strings to strings", SAME),
    "spec_edited": ("its embedded spec does not match its recorded sha256 (edited or corrupt)", None),
    "spec_not_json": ("its embedded spec is not valid JSON", SAME),
    "spec_not_object": ("its embedded spec is not a JSON object", SAME),
    "ties_not_names": (None, "its tie list does not hold lists of tensor names"),
    "format_empty": ("invalid checkpoint format '' in its metadata", None),
    "ties_not_json": (None, "its tie list is not valid JSON"),
    "format_2": ("written in netcfg checkpoint format 2; this netcfg reads format 1: upgrade netcfg", None),
    "spec_netcfg_2": (
        "this spec is written in netcfg format 2; this netcfg reads format 1: upgrade netcfg",
        None,
    ),
    "pickle": (PICKLE, SAME),
    "pickle_named_safetensors": (PICKLE, SAME),
    "pickle_protocol_0": ("a text file, not a safetensors checkpoint (a spec goes to run, build or --config)", SAME),
    "torch_zip": (ZIP, SAME),
    "torch_zip_named_safetensors": (ZIP, SAME),
    "empty": ("empty file: not a safetensors file", SAME),
    "random_bytes": (
        "header length 14,354,624,986,284,130,233 exceeds the 100,000,000-byte limit (corrupt or not safetensors)",
        SAME,
    ),
    "directory": ("is a directory, not a safetensors file", SAME),
    "missing": ("no such file", SAME),
    "fifo": ("not a regular file (a pipe), not a safetensors file", SAME),
    "shape_5000_digits": (
        "header is not valid JSON (Exceeds the limit (4300 digits) for integer string conversion: value has 5000 "
        "digits)",
        SAME,
    ),
    "zero_times_huge_dim": ("tensor '0.bias': shape [0, 1180591620717411303424] has a dimension over 2**62", SAME),
    "too_many_tensors": ("header lists more than 100,000 tensors (corrupt or hostile)", SAME),
    "spec_deeply_nested": ("its embedded spec nests too deeply", SAME),
    "spec_nested_200": ("nesting deeper than 100 levels", None),
    "format_superscript": ("invalid checkpoint format '\u00b2' in its metadata", None),
    "spec_seed_2p70": ("'seed' must be less than or equal to 9223372036854775807, got 1180591620717411303424", None),
    "name_with_escapes": (
        "missing tensor '0.bias' [256] float32\n{file}: error: unexpected tensor '0.bias\\n\\x1b[31mred' [256] "
        "float32 (not in the model)",
        None,
    ),
    "tie_stored_twice_differing": (
        "tensors 'embed.weight' and 'head.weight' are one tied tensor in the model, but differ in the file",
        None,
    ),
    # inspect shows an embedded spec as it is: only loading it expands it.
    "spec_duplicate_key": ("duplicate key 'out_features' in model.layers.0 (JSON would keep the last one)", None),
    "spec_repeat_bomb": (
        "5,000 copies of a body of about 2,005 values: the spec would expand to more than 1,000,000 values "
        "(aliases, repeats and interpolation counted)",
        None,
    ),
    "spec_interpolation_bomb": ("an interpolated string longer than 10,000 characters", None),
    "spec_many_values": ("the spec holds more than 200,000 values, the limit of a spec file", None),
    # Sharded checkpoints: the index, then each shard's header, then that the two agree.
    "index_missing_shard": ("shard 'missing.safetensors' (tensor '2.bias'): no such file", SAME),
    "index_unlisted_tensor": ("shard 'shard-2.safetensors' holds tensor '2.bias', which the index does not list", SAME),
    "index_wrong_shard": (
        "shard 'shard-2.safetensors' holds tensor '2.bias', which the index puts in shard 'shard-1.safetensors'\n"
        "{file}: error: tensor '2.bias': the index puts it in shard 'shard-1.safetensors', which does not hold it",
        SAME,
    ),
    "index_shard_pickle": (f"shard 'pickle-shard.safetensors' (tensor '0.bias' and 2 more): {PICKLE}", SAME),
    "index_shard_zip": (f"shard 'zip-shard.safetensors' (tensor '0.bias' and 2 more): {ZIP}", SAME),
    "index_shard_truncated": (
        "shard 'truncated-shard.safetensors' (tensor '0.bias' and 2 more): tensors need 11,304 data bytes but the "
        "file has 11,300: truncated?",
        SAME,
    ),
    "index_shard_other_save": (
        "shard 'other-save.safetensors' is not from the save that wrote the index (its netcfg.shard_set is "
        "'123456789abc', the index's '0c0ffee0c0de')",
        SAME,
    ),
    "index_shard_is_a_folder": (
        "shard 'folder.safetensors' (tensor '2.bias'): is a directory, not a safetensors file",
        SAME,
    ),
    "index_parent_folder": (
        "tensor '2.bias': shard '../valid.safetensors' is not a file name in the index's folder",
        SAME,
    ),
    "index_absolute_path": ("tensor '2.bias': shard '/etc/passwd' is not a file name in the index's folder", SAME),
    "index_nul_in_name": (
        "tensor '2.bias': shard 'shard\\x00.safetensors' is not a file name in the index's folder",
        SAME,
    ),
    "index_shard_not_text": ("tensor '2.bias': its shard must be a file name, got 7", SAME),
    "index_not_json": ("index is not valid JSON (Expecting value at byte 26)", SAME),
    "index_nests_deeply": ("index nests too deeply to be a safetensors index", SAME),
    "index_duplicate_tensor": ("duplicate tensor name '0.bias' in the index's weight_map", SAME),
    "index_duplicate_weight_map": ("duplicate key 'weight_map' in the index", SAME),
    "index_duplicate_metadata_key": ("duplicate key 'format' in the index's metadata", SAME),
    "index_without_weight_map": (
        "a JSON file without a 'weight_map' object: not a safetensors index (a spec goes to run, build or --config)",
        SAME,
    ),
    "index_metadata_not_object": ("the index's 'metadata' is not a JSON object", SAME),
    "index_too_large": ("index is 100,000,001 bytes, past the 100,000,000-byte limit (corrupt or hostile)", SAME),
    "index_many_values": ("index holds more than 2,000,000 JSON values (corrupt or hostile)", SAME),
    "index_too_many_tensors": ("index lists more than 100,000 tensors (corrupt or hostile)", SAME),
    "index_too_many_shards": ("index names more than 10,000 shard files (corrupt or hostile)", SAME),
    "index_empty": ("empty file: not a safetensors file", SAME),
}

PLACE = {
    "spec_netcfg_2": "{file} (embedded spec):1:1",
    "spec_nested_200": "{file} (embedded spec)",
    "spec_seed_2p70": "{file} (embedded spec):1:1",
    "spec_duplicate_key": "{file} (embedded spec)",
    "spec_repeat_bomb": "{file} (embedded spec):1:1",
    "spec_interpolation_bomb": "{file} (embedded spec):1:1",
    "spec_many_values": "{file} (embedded spec)",
}
"""Where the line says the problem is, when not the file itself."""

BUGS: dict = {}  # (case, command) -> why a message is still wrong (strict xfail)


def test_every_case_has_an_expectation():
    assert set(EXPECTED) == set(corpus.CASES)
    assert len(corpus.CASES) >= 14


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return corpus.build(tmp_path_factory.mktemp("corpus"))


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def expected_line(case: str, command: str, facts: corpus.Facts) -> str | None:
    load_line, inspect_line = EXPECTED[case]
    message = load_line if command == "load" or inspect_line is SAME else inspect_line
    if message is None:
        return None
    file = corpus.CASES[case][0]
    place = PLACE.get(case, "{file}").format(file=file)
    return f"{place}: error: " + message.format(hlen=facts.header_len, size=facts.size, file=file)


def params():
    for case in corpus.CASES:
        for command in ("load", "inspect"):
            marks = [pytest.mark.xfail(strict=True, reason=BUGS[case, command])] if (case, command) in BUGS else []
            yield pytest.param(case, command, id=f"{case}-{command}", marks=marks)


@pytest.mark.parametrize(("case", "command"), list(params()))
def test_one_line_error(built, monkeypatch, case, command):
    paths, facts = built
    monkeypatch.chdir(paths[case].parent)
    result = invoke(command, corpus.CASES[case][0])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    line = expected_line(case, command, facts)
    if line is None:  # accepted: the file is usable for this command
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == line + "\n"


@pytest.mark.parametrize("case", list(corpus.CASES))
def test_tensors_lists_or_refuses_in_one_line(built, monkeypatch, case):
    """`netcfg tensors` on every file of the corpus: the tensors, or the reader's line (a bad embedded spec
    does not matter to it), never a traceback."""
    paths, facts = built
    monkeypatch.chdir(paths[case].parent)
    result = invoke("tensors", corpus.CASES[case][0])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    try:
        read_checkpoint(paths[case].name)
        readable = True
    except NetcfgError:
        readable = False
    if readable:  # its headers are sound: listed, whatever its embedded spec
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"{corpus.CASES[case][0]}: a dict of ")
    else:
        assert result.exit_code == 2
        assert result.stderr == expected_line(case, "load", facts) + "\n"


def test_a_sharded_checkpoint_loads_inspects_and_lists(built, monkeypatch):
    paths, facts = built
    monkeypatch.chdir(facts.path.parent)
    result = invoke("load", "sharded.safetensors.index.json", "--check")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("loaded sharded.safetensors.index.json: 4 of 4 tensors\n7,946 parameters")
    assert result.stdout.splitlines()[-1] == invoke("load", facts.path.name, "--check").stdout.splitlines()[-1]
    result = invoke("inspect", "sharded.safetensors.index.json", "--params")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("sharded.safetensors.index.json: sharded safetensors, 2 shards, 4 tensors, ")
    assert "shard-1.safetensors        1  20,624" in result.stdout
    assert invoke("tensors", "sharded.safetensors.index.json").stdout.startswith(
        "sharded.safetensors.index.json: a dict of 4 tensors\n  0.weight: [256, 20] float32 ["
    )


def test_the_valid_file_loads_and_inspects(built, monkeypatch):
    paths, facts = built
    monkeypatch.chdir(facts.path.parent)
    result = invoke("load", facts.path.name)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("loaded valid.safetensors: 4 of 4 tensors\n7,946 parameters")
    result = invoke("inspect", facts.path.name)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"valid.safetensors: safetensors, 4 tensors, 7,946 elements, 31.8 KiB "
                                    f"({facts.header_len + 8:,}-byte header)\n")  # fmt: skip


def test_inspect_shows_a_newer_format_without_refusing_it(built, monkeypatch):
    paths, _ = built
    monkeypatch.chdir(paths["format_2"].parent)
    result = invoke("inspect", "format_2.safetensors")
    assert "(checkpoint format 2)" in result.stdout.splitlines()[1]


@pytest.mark.parametrize("case", ["pickle", "pickle_named_safetensors", "torch_zip", "torch_zip_named_safetensors"])
@pytest.mark.parametrize("command", ["load", "inspect"])
def test_pickles_and_zips_are_never_opened(built, monkeypatch, case, command):
    """Refused by their first bytes: no unpickler, torch.load or zip reader is ever called."""
    paths, _ = built
    calls = []

    def spy(name):
        def called(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} called")

        return called

    for module, attr in [(pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load"),
                         (torch.serialization, "load"), (zipfile, "ZipFile")]:  # fmt: skip
        monkeypatch.setattr(module, attr, spy(f"{module.__name__}.{attr}"))
    result = invoke(command, paths[case])
    assert result.exit_code == 2
    assert calls == []


def test_the_header_reader_refuses_a_pickle_without_importing_pickle_or_torch(built):
    paths, _ = built
    code = (
        "import sys\n"
        "from netcfg.io.safetensors_header import read_header\n"
        "from netcfg.errors import CheckpointError\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        read_header(path)\n"
        "    except CheckpointError as exc:\n"
        "        print(exc.diagnostics[0].message.split(' (')[0])\n"
        "print('pickle' in sys.modules, 'torch' in sys.modules)\n"
    )
    files = [str(paths["pickle"]), str(paths["torch_zip"])]
    out = subprocess.run([sys.executable, "-c", code, *files], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["a Python pickle", "a zip archive", "False False"]


def test_load_tensors_refuses_the_corpus_too(built):
    """The Python API reads through the same checks: CheckpointError with the same message."""
    from netcfg.errors import CheckpointError
    from netcfg.io.reading import load_tensors

    paths, facts = built
    for case in ("truncated_in_data", "overlap", "pickle", "torch_zip", "duplicate_name", "empty"):
        with pytest.raises(CheckpointError) as err:
            load_tensors(paths[case])
        (diagnostic,) = err.value.diagnostics
        assert str(diagnostic).split(": error: ")[1] == EXPECTED[case][0].format(hlen=facts.header_len)
