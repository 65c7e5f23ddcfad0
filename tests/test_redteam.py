"""Red team: each class of hostile input of issue 11, generated at scale and run through the CLI,
each command in a child process of its own, with its expected outcome, a CPU-time bound and a
peak-memory bound, so that a regression fails the suite.

Every case writes its input into a folder of its own, runs one `netcfg` command in a child of
tests/limits.py's Sandbox (torch and netcfg imported once; each child forked from it, so the
command's CPU time and the growth of its peak RSS are its own, C allocations included), then
checks:

* the outcome: exit code 2 with one located line per problem (`where: error: message`, at most
  400 characters, no raw control, bidi or invisible character, no traceback), or success with
  the output expected;
* CPU time under the case's bound (CPU, not wall time: other work sharing the machine barely
  changes it; a wall-time limit still kills a stalled command);
* peak-RSS growth under the case's bound (an address-space limit stops a runaway before it
  fills the machine).

The scales make the gap between right and wrong wide: where netcfg counts before the work, a
refusal takes milliseconds and megabytes, while doing the work (expanding the aliases, the
repeats, the interpolation; reading the sparse tensor) takes minutes and gigabytes; where a
check must look at everything (110,000 tie paths, 99,000 tensors), a linear check meets its
bound 2 to 5 times over on a loaded 2-core machine, and a quadratic one misses it by orders of
magnitude (a pair of items compared in 0.1 us makes 20 minutes of 110,000 paths).

    python tests/test_redteam.py            # every case, a table of the figures against the bounds
    python tests/test_redteam.py ties csv   # cases whose name contains a word
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import sys
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox forks, and reads /proc and RLIMIT_AS")

if __name__ == "__main__":  # run as a script: import this checkout's netcfg and tests
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.limits import Ran, Sandbox  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
HEAD = "netcfg: 1\ninput: {shape: [2, 20]}\n"
EXPANSION = "(aliases, repeats and interpolation counted)"
VALUES = f"the spec would expand to more than 1,000,000 values {EXPANSION}"
LOCATED = re.compile(r"^(?P<where>.+?): error: (?P<message>.+)$")
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


@dataclass
class Expect:
    """A command and what it must do."""

    args: list
    code: int = 2
    first: str = ""
    """A regular expression the first line of stderr (code 2) or of stdout (code 0) must match whole."""
    last: str = ""
    """One the last line of stderr must match (code 2, several lines)."""
    lines: int = 1
    """Lines of stderr expected for code 2 (one per problem)."""
    env: dict = field(default_factory=dict)
    check: Callable[[Ran], None] | None = None
    """More checks on the result (files left in place, the output's cells)."""


@dataclass(frozen=True)
class Case:
    make: Callable[[Path, Sandbox], Expect]
    cpu: float
    """CPU seconds the command may take."""
    mib: float
    """MiB its peak RSS may grow by."""


CASES: dict[str, Case] = {}


def case(cpu: float, mib: float):
    def register(make: Callable[[Path, Sandbox], Expect]):
        CASES[make.__name__] = Case(make, cpu, mib)
        return make

    return register


def write(folder: Path, name: str, text: str) -> str:
    (folder / name).write_text(text, encoding="utf-8")
    return name


def listed(name: str, first: str, more: str) -> Expect:
    """`validate name` refused with MAX_LISTED problems, the first one `first`, then a line counting the others."""
    return Expect(["validate", name], first=at(name, first), lines=21, last=at(name, more))


def at(file: str, message: str) -> str:
    """A line for `message` at some line:column of `file`."""
    return rf"{re.escape(file)}:\d+:\d+: error: {re.escape(message)}"


# ---------------------------------------------------------------- YAML: aliases, nesting, size


@case(cpu=0.5, mib=40)
def alias_bomb(d: Path, sandbox: Sandbox) -> Expect:
    """Billion laughs: 9 levels of 10 aliases (10^9 values once expanded) in 1 KB."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    name = write(d, "bomb.yaml", HEAD + "model: {type: relu}\n" + "\n".join(lines) + "\n")
    return Expect(
        ["validate", name], first=at(name, "the document expands to more than 200,000 values (aliases counted)")
    )


@case(cpu=0.5, mib=60)
def alias_bytes(d: Path, sandbox: Sandbox) -> Expect:
    """A 1 MiB name given to 1,000 layers by aliases: 1 GiB of text."""
    layers = ", ".join(["{type: relu, name: *s}"] * 999)
    text = HEAD + f"model:\n  type: sequential\n  layers: [{{type: relu, name: &s {'a' * 2**20}}}, {layers}]\n"
    name = write(d, "aliases.yaml", text)
    return Expect(
        ["validate", name], first=at(name, "the document expands to more than 64 MiB of text (aliases counted)")
    )


@case(cpu=0.5, mib=40)
def deep_flow(d: Path, sandbox: Sandbox) -> Expect:
    """10,000 nested flow lists."""
    name = write(d, "deep.yaml", HEAD + "model: {type: relu}\nx: " + "[" * 10_000 + "]" * 10_000 + "\n")
    return Expect(["validate", name], first=at(name, "nesting deeper than 100 levels"))


@case(cpu=0.5, mib=40)
def deep_block(d: Path, sandbox: Sandbox) -> Expect:
    """1,000 nested block mappings (1 MB of indentation)."""
    text = HEAD + "model: {type: relu}\n" + "".join("  " * i + "k:\n" for i in range(1_000))
    name = write(d, "deep.yaml", text)
    return Expect(["validate", name], first=at(name, "nesting deeper than 100 levels"))


@case(cpu=2.0, mib=60)
def flat_list(d: Path, sandbox: Sandbox) -> Expect:
    """A 10 MB list of 4.9 million values (it took 27 s and 2 GB when counted after building it)."""
    name = write(d, "flat.yaml", HEAD + "model: {type: relu}\nx: [" + "1," * 4_900_000 + "1]\n")
    return Expect(
        ["validate", name], first=at(name, "the document expands to more than 200,000 values (aliases counted)")
    )


@case(cpu=1.5, mib=150)
def megabyte_key(d: Path, sandbox: Sandbox) -> Expect:
    """An unknown key of 8 MiB: elided in the message, and no did-you-mean indexes it (2.3 s of
    CPU before, twice)."""
    name = write(d, "key.yaml", HEAD + "model:\n  type: relu\n  ? " + "k" * 8 * 2**20 + "\n  : 1\n")
    return Expect(["validate", name], first=at(name, f"unknown key '{'k' * 40}…' (8,388,608 characters) for relu"))


@case(cpu=1.5, mib=150)
def megabyte_type(d: Path, sandbox: Sandbox) -> Expect:
    name = write(d, "type.yaml", HEAD + "model: {type: " + "t" * 8 * 2**20 + "}\n")
    message = (
        f"unknown layer type '{'t' * 40}…' (8,388,608 characters) (see 'netcfg layers'; a plugin's types need --plugin)"
    )
    return Expect(["validate", name], first=at(name, message))


@case(cpu=0.5, mib=60)
def megabyte_scalar_in_bad_yaml(d: Path, sandbox: Sandbox) -> Expect:
    """A 1 MiB scalar of words before a syntax error: libyaml's message (PyYAML's own parser,
    which reads the file again for a more detailed one, took 2.6 s over a megabyte)."""
    name = write(d, "bad.yaml", HEAD + "model: {type: relu, name: " + "a " * 2**19 + "}\nx: [\n")
    return Expect(
        ["validate", name], first=re.escape(f"{name}:5:1: error: invalid YAML: did not find expected node content")
    )


@case(cpu=4.0, mib=150)
def unknown_keys(d: Path, sandbox: Sandbox) -> Expect:
    """20,000 unknown keys on one layer: 20 listed with a did-you-mean, the rest counted."""
    keys = ", ".join(f"k{i}: 1" for i in range(20_000))
    name = write(d, "keys.yaml", HEAD + f"model: {{type: identity, {keys}}}\n")
    return listed(name, "unknown key 'k0' for identity", "... and 19,980 more unknown keys")


@case(cpu=6.0, mib=200)
def graph_refs(d: Path, sandbox: Sandbox) -> Expect:
    """8,000 graph nodes, each reading the previous one and one name that does not exist."""
    nodes = "".join(
        f"    n{i}: {{type: relu, inputs: [{'input' if i == 0 else f'n{i - 1}'}, m{i}]}}\n" for i in range(8_000)
    )
    name = write(d, "graph.yaml", HEAD + f"model:\n  type: graph\n  nodes:\n{nodes}")
    return listed(name, "unknown input 'm0'", "... and 7,980 more inputs that are not earlier nodes")


# ---------------------------------------------------------------- expansion: repeats, blocks, interpolation


@case(cpu=0.5, mib=40)
def repeat_in_repeat(d: Path, sandbox: Sandbox) -> Expect:
    """10,000 x 10,000 x 10,000 copies of a layer (10^12 module nodes) in 150 bytes."""
    body = "{type: repeat, times: 10000, body: {type: repeat, times: 10000, body: {type: relu}}}"
    name = write(d, "repeats.yaml", HEAD + f"model: {{type: repeat, times: 10000, body: {body}}}\n")
    return Expect(
        ["validate", name],
        first=at(
            name, "10,000 copies of a body of about 10,001 module nodes: the model would expand to more than 100,000"
        ),
    )


@case(cpu=0.5, mib=40)
def repeat_of_lists(d: Path, sandbox: Sandbox) -> Expect:
    """5,000 copies of a layer holding a list of 2,000 values (10 million values from 8 KB)."""
    junk = ", ".join(["1"] * 2000)
    name = write(
        d, "lists.yaml", HEAD + f"model: {{type: repeat, times: 5000, body: {{type: identity, junk: [{junk}]}}}}\n"
    )
    message = f"5,000 copies of a body of about 2,005 values: {VALUES}"
    return Expect(["validate", name], first=at(name, message))


@case(cpu=1.5, mib=40)
def list_argument(d: Path, sandbox: Sandbox) -> Expect:
    """A block whose list argument is used 100 times, called 10 times with a list of 2,000 values."""
    uses = ", ".join(["'${x}'"] * 100)
    blocks = f"blocks:\n  b:\n    args: {{x: ~}}\n    body: {{type: identity, junk: [{uses}]}}\n"
    first = "{type: block, block: b, args: {x: &x [" + ", ".join(["1"] * 2000) + "]}}"
    calls = ", ".join([first] + ["{type: block, block: b, args: {x: *x}}"] * 9)
    name = write(d, "args.yaml", HEAD + blocks + f"model: {{type: sequential, layers: [{calls}]}}\n")
    message = f"block 'b' would expand to about 200,105 values: {VALUES}"
    return Expect(["validate", name], first=r".*", lines=2, last=at(name, message))


@case(cpu=0.5, mib=60)
def interpolation_joined(d: Path, sandbox: Sandbox) -> Expect:
    """A name of 100 interpolated pieces of 9,999 characters, in 1,000 copies (1 GB of text)."""
    piece = "${'a' * 9999}" * 100
    name = write(
        d, "joined.yaml", HEAD + f'model: {{type: repeat, times: 1000, body: {{type: identity, name: "{piece}"}}}}\n'
    )
    return Expect(["validate", name], first=at(name, "an interpolated string longer than 10,000 characters"))


@case(cpu=3.0, mib=250)
def interpolation_total(d: Path, sandbox: Sandbox) -> Expect:
    """10,000 names of 9,999 characters (100 MB): stopped at 64 MiB, as they are made."""
    text = HEAD + "model: {type: repeat, times: 10000, body: {type: identity, name: \"${'a' * 9999}\"}}\n"
    name = write(d, "total.yaml", text)
    return Expect(["validate", name], first=at(name, f"the spec expands to more than 64 MiB of text {EXPANSION}"))


def block_chain(calls: int, wrap: bool) -> str:
    """`calls` templates, each the body of the one before (inside a sequential when `wrap`)."""
    lines = [HEAD.rstrip("\n"), "blocks:", "  b0: {body: {type: linear, out_features: 8}}"]
    for i in range(1, calls):
        call = f"{{type: block, block: b{i - 1}}}"
        lines.append(
            f"  b{i}: {{body: {{type: sequential, layers: [{call}]}}}}" if wrap else f"  b{i}: {{body: {call}}}"
        )
    return "\n".join(lines + [f"model: {{type: block, block: b{calls - 1}}}"]) + "\n"


@case(cpu=1.0, mib=60)
def nested_blocks(d: Path, sandbox: Sandbox) -> Expect:
    """1,000 templates, each the body of the next (a RecursionError traceback before)."""
    name = write(d, "chain.yaml", block_chain(1000, wrap=False))
    message = "nesting deeper than 100 levels once blocks are expanded (100 block calls deep, 'b999' to 'b900')"
    return Expect(["validate", name], first=at(name, message))


@case(cpu=1.0, mib=60)
def nested_blocks_in_sequentials(d: Path, sandbox: Sandbox) -> Expect:
    """150 templates, each a sequential calling the next (the build's RecursionError before)."""
    name = write(d, "chain.yaml", block_chain(150, wrap=True))
    message = "nesting deeper than 100 levels once blocks are expanded (50 block calls deep, 'b149' to 'b100')"
    return Expect(["validate", name], first=at(name, message))


@case(cpu=2.0, mib=100)
def deepest_blocks_run(d: Path, sandbox: Sandbox) -> Expect:
    """The deepest chain of templates allowed (100 levels) builds and runs."""
    name = write(d, "chain.yaml", block_chain(50, wrap=True))
    return Expect(["run", name], code=0, first=r"168 parameters, .*")


@case(cpu=8.0, mib=250)
def large_legal_expansion(d: Path, sandbox: Sandbox) -> Expect:
    """10,000 copies of a layer are allowed: expanded, validated and built (on meta) in time linear
    in the copies (about 0.25 ms each)."""
    name = write(
        d,
        "many.yaml",
        HEAD + "model: {type: repeat, times: 100, body: {type: repeat, times: 100, body: {type: relu}}}\n",
    )
    return Expect(["validate", name], code=0, first=re.escape(f"{name}: ok (0 parameters, output shape [2, 20])"))


@case(cpu=6.0, mib=200)
def ties_110k(d: Path, sandbox: Sandbox) -> Expect:
    """One tie of 110,000 paths the model does not have (minutes when each was searched for)."""
    paths = ", ".join(f"layers.{i}.weight" for i in range(110_000))
    name = write(
        d,
        "ties.yaml",
        HEAD + f"model: {{type: sequential, layers: [{{type: linear, out_features: 4}}]}}\nties: [[{paths}]]\n",
    )
    first = "tie: no parameter 'layers.0.weight' in the model; did you mean '0.weight'?"
    return listed(name, first, "tie: ... and 109,980 more paths not in the model")


# ---------------------------------------------------------------- checkpoints: headers, embedded specs, sizes


def _safetensors(path: Path, entries: dict, data: int = 0, metadata: dict | None = None) -> Path:
    """A safetensors file with this header; `data` bytes of zeros after it (a hole: a sparse file)."""
    header = {"__metadata__": metadata, **entries} if metadata else entries
    raw = json.dumps(header, separators=(",", ":")).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + data)
    return path


def _scalars(names: list[str]) -> dict:
    """Header entries of one float32 each, one after the other."""
    return {n: {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]} for i, n in enumerate(names)}


@case(cpu=4.0, mib=200)
def header_20k_tensors(d: Path, sandbox: Sandbox) -> Expect:
    """`tensors` on a file of 20,000 tensors: the header checked and the first values of each read."""
    _safetensors(d / "many.safetensors", _scalars([f"blocks.{i}.weight" for i in range(20_000)]), 4 * 20_000)
    return Expect(["tensors", "many.safetensors"], code=0, first=re.escape("many.safetensors: a dict of 20000 tensors"))


@case(cpu=1.0, mib=100)
def header_huge_shape(d: Path, sandbox: Sandbox) -> Expect:
    """A shape of 100,000 dimensions of 2**62 (its whole product took minutes)."""
    _safetensors(d / "dims.safetensors", {"t": {"dtype": "F32", "shape": [2**62] * 100_000, "data_offsets": [0, 4]}}, 4)
    big = ", ".join([str(2**62)] * 4)
    message = f"tensor 't': shape [{big}, ... (100,000 dimensions)] has more than 2**62 elements"
    return Expect(["tensors", "dims.safetensors"], first=re.escape(f"dims.safetensors: error: {message}"))


@case(cpu=8.0, mib=300)
def pretrained_99k(d: Path, sandbox: Sandbox) -> Expect:
    """`pretrained:` of a file of 99,000 tensors, none of which the model has (a did-you-mean over
    every key for each was quadratic)."""
    _safetensors(d / "many.safetensors", _scalars([f"blocks.{i}.weight" for i in range(99_000)]), 4 * 99_000)
    text = HEAD + "model: {type: repeat, times: 2000, body: {type: linear, out_features: 20}}\n"
    text += 'pretrained:\n  - file: many.safetensors\n    map: {"blocks.": "extra."}\n'
    name = write(d, "pretrained.yaml", text)
    message = (
        "pretrained 0: 'blocks.0.weight' maps to 'extra.0.weight', which is not in the model; did you mean '0.weight'?"
    )
    return listed(name, message, "pretrained 0: ... and 98,980 more tensors that do not fit")


SPARSE_SHAPE = [250_000, 1_000_000]
SPARSE_BYTES = 4 * 250_000 * 1_000_000
"""1 TB of float32: far past any test machine's free memory, and free to make as a sparse file."""


def _sparse(name: str) -> dict:
    """The header entry of one tensor of SPARSE_SHAPE."""
    return {name: {"dtype": "F32", "shape": SPARSE_SHAPE, "data_offsets": [0, SPARSE_BYTES]}}


@case(cpu=1.0, mib=60)
def sparse_tensor_peek(d: Path, sandbox: Sandbox) -> Expect:
    """`tensors` of a sparse file claiming a 1 TB tensor reads only the six values it prints."""
    _safetensors(d / "huge.safetensors", _sparse("x"), SPARSE_BYTES)
    return Expect(["tensors", "huge.safetensors"], code=0, first=re.escape("huge.safetensors: a dict of 1 tensors"))


@case(cpu=1.0, mib=60)
def sparse_tensor_input(d: Path, sandbox: Sandbox) -> Expect:
    """`run --input` of a sparse file claiming a 1 TB tensor: refused before allocating."""
    _safetensors(d / "huge.safetensors", _sparse("x"), SPARSE_BYTES)
    name = write(d, "relu.yaml", "netcfg: 1\ninput: {shape: [2, 4]}\nmodel: {type: relu}\n")
    message = "tensor 'x' F32 [250000, 1000000] needs 1,000,000,000,000 bytes (931.3 GiB), more than the "
    return Expect(
        ["run", name, "--input", "huge.safetensors"],
        first=re.escape(f"--input huge.safetensors: error: {message}") + r"[\d,]+ bytes \(.*\) free on cpu",
    )


@case(cpu=3.0, mib=150)
def sparse_checkpoint_load(d: Path, sandbox: Sandbox) -> Expect:
    """`load` of a checkpoint whose spec and tensor claim 1 TB: refused before allocating."""
    spec = {
        "netcfg": 1,
        "input": {"shape": [2, 1_000_000]},
        "model": {"type": "linear", "out_features": 250_000, "bias": False},
    }
    _checkpoint(d / "huge.safetensors", spec, _sparse("weight"), SPARSE_BYTES)
    message = "tensor 'weight' F32 [250000, 1000000] needs 1,000,000,000,000 bytes (931.3 GiB), more than the "
    return Expect(
        ["load", "huge.safetensors"],
        first=re.escape(f"huge.safetensors: error: {message}") + r"[\d,]+ bytes \(.*\) free on cpu",
    )


@case(cpu=1.0, mib=60)
def sparse_pretrained(d: Path, sandbox: Sandbox) -> Expect:
    """`pretrained:` from a sparse file claiming a 1 TB tensor, mapped onto a small weight:
    refused from the header, nothing read."""
    _safetensors(d / "huge.safetensors", _sparse("w"), SPARSE_BYTES)
    text = (
        HEAD
        + "model: {type: linear, out_features: 4, bias: false}\n"
        + 'pretrained:\n  - file: huge.safetensors\n    map: {"w": "weight"}\n'
    )
    name = write(d, "pretrained.yaml", text)
    message = "'w' is F32 [250000, 1000000] in the file, 'weight' is F32 [4, 20] in the model"
    return Expect(["run", name], first=at(name, "pretrained 0: ") + r"(huge\.safetensors: )?" + re.escape(message))


@case(cpu=3.0, mib=150)
def huge_weights(d: Path, sandbox: Sandbox) -> Expect:
    """A 4 TB layer: `run` refuses it from its arguments, before allocating."""
    name = write(
        d,
        "big.yaml",
        "netcfg: 1\ninput: {shape: [2, 1000000]}\nmodel: {type: linear, out_features: 1000000, bias: false}\n",
    )
    message = "not enough memory on cpu: the layers up to 'model' (linear) need 4,000,000,000,000 bytes, "
    return Expect(["run", name], first=at(name, message)[:-1] + r" [\d,]+ are available .*")


@case(cpu=3.0, mib=120)
def huge_activations(d: Path, sandbox: Sandbox) -> Expect:
    """No parameter, 16 TiB of intermediate tensors alive at once: `run` refuses before allocating."""
    text = HEAD.replace("[2, 20]", "[64, 8]") + (
        "model:\n  type: sequential\n  layers:\n    - {type: reshape, shape: [1, 1, 8]}\n"
        "    - {type: upsample, scale_factor: 1024}\n    - {type: upsample, scale_factor: [8, 8]}\n"
        "    - {type: upsample, scale_factor: [1, 64]}\n"
    )
    name = write(d, "acts.yaml", text)
    message = (
        "running this model needs about 16.3 TiB (weights 0 B, activations 16.3 TiB at batch 64, "
        "at their peak in layer '3' (upsample)), "
    )
    return Expect(["run", name], first=re.escape(f"{name}: error: {message}") + r"[\d.]+ \w+ are available on cpu .*")


def _checkpoint(path: Path, spec: dict, entries: dict, data: int) -> Path:
    text = json.dumps(spec, separators=(",", ":"))
    metadata = {
        "format": "pt",
        "netcfg.checkpoint_format": "1",
        "netcfg.spec": text,
        "netcfg.spec_sha256": hashlib.sha256(text.encode()).hexdigest(),
    }
    return _safetensors(path, entries, data, metadata)


def _embedded(d: Path, sandbox: Sandbox, spec_text: str) -> Expect:
    """configs/mlp.yaml saved, its embedded spec replaced by `spec_text` (its sha256 updated)."""
    base = d / "mlp.safetensors"
    saved = sandbox.run(["save", ROOT / "configs/mlp.yaml", "-o", base], d)
    assert saved.code == 0, saved.stderr
    raw = base.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    header["__metadata__"]["netcfg.spec"] = spec_text
    header["__metadata__"]["netcfg.spec_sha256"] = hashlib.sha256(spec_text.encode()).hexdigest()
    text = json.dumps(header, separators=(",", ":")).encode()
    (d / "edited.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n :])
    return Expect(["load", "edited.safetensors", "--device", "meta"])


def _spec_json(model: str) -> str:
    return '{"netcfg":1,"input":{"shape":[2,20]},"model":' + model + "}"


EMBEDDED = "edited.safetensors (embedded spec)"


@case(cpu=0.5, mib=60)
def embedded_interpolation(d: Path, sandbox: Sandbox) -> Expect:
    """A 1.5 KB checkpoint whose spec interpolates 1 GB of names (4 GB to load before)."""
    model = json.dumps({"type": "repeat", "times": 1000, "body": {"type": "identity", "name": "${'a' * 9999}" * 100}})
    expect = _embedded(d, sandbox, _spec_json(model))
    expect.first = at(EMBEDDED, "an interpolated string longer than 10,000 characters")
    return expect


@case(cpu=0.5, mib=60)
def embedded_repeat_of_lists(d: Path, sandbox: Sandbox) -> Expect:
    """A checkpoint whose spec repeats a list of 2,000 values 5,000 times (35 s and 3 GB before)."""
    model = json.dumps({"type": "repeat", "times": 5000, "body": {"type": "identity", "junk": [1] * 2000}})
    expect = _embedded(d, sandbox, _spec_json(model))
    expect.first = at(
        EMBEDDED,
        f"5,000 copies of a body of about 2,005 values: {VALUES}",
    )
    return expect


@case(cpu=1.0, mib=100)
def embedded_flat_list(d: Path, sandbox: Sandbox) -> Expect:
    """A checkpoint whose spec holds a list of 4.9 million values: counted before it is parsed."""
    expect = _embedded(d, sandbox, _spec_json('{"type":"relu"},"x":[' + "1," * 4_900_000 + "1]"))
    expect.first = re.escape(f"{EMBEDDED}: error: the spec holds more than 200,000 values, the limit of a spec file")
    return expect


@case(cpu=0.5, mib=60)
def embedded_deep(d: Path, sandbox: Sandbox) -> Expect:
    """A checkpoint whose spec nests 10,000 lists."""
    expect = _embedded(d, sandbox, _spec_json('{"type":"relu"},"x":' + "[" * 10_000 + "]" * 10_000))
    expect.first = re.escape("edited.safetensors: error: its embedded spec nests too deeply")
    return expect


@case(cpu=0.5, mib=60)
def embedded_duplicate_key(d: Path, sandbox: Sandbox) -> Expect:
    expect = _embedded(d, sandbox, _spec_json('{"type":"linear","out_features":4,"out_features":5}'))
    expect.first = re.escape(f"{EMBEDDED}: error: duplicate key 'out_features' in model (JSON would keep the last one)")
    return expect


@case(cpu=2.5, mib=250)
def deepest_spec_round_trip(d: Path, sandbox: Sandbox) -> Expect:
    """The deepest spec a file may hold (100 levels) saved, then loaded back and run."""
    model = "{type: linear, out_features: 8}"
    for _ in range(49):
        model = f"{{type: sequential, layers: [{model}]}}"
    name = write(d, "deep.yaml", HEAD + f"model: {model}\n")
    saved = sandbox.run(["save", name, "-o", "deep.safetensors"], d)
    assert saved.code == 0, saved.stderr
    return Expect(
        ["load", "deep.safetensors", "--check"], code=0, first=re.escape("loaded deep.safetensors: 2 of 2 tensors")
    )


# ---------------------------------------------------------------- command lines, names, output


@case(cpu=0.5, mib=60)
def bad_set_paths(d: Path, sandbox: Sandbox) -> Expect:
    """--set paths `isdigit()` takes and `int()` does not, a 120 KB value, a path of 10,000 parts,
    an index of 23 digits: one line each, all reported."""
    sets = [
        "model.layers.--1.out_features=3",
        "model.layers.²=3",
        "vars.x=" + "b" * 120_000,
        ".".join(["a"] * 10_000) + "=1",
        "model.layers.99999999999999999999999.type=relu",
    ]
    args = ["validate", ROOT / "configs/mlp.yaml"] + [a for s in sets for a in ("--set", s)]
    return Expect(
        args,
        first=re.escape(
            "--set model.layers.--1.out_features=3: error: "
            "'--1' is not an index of the list at model.layers (it has 3 items)"
        ),
        lines=5,
    )


@case(cpu=0.5, mib=60)
def long_file_name(d: Path, sandbox: Sandbox) -> Expect:
    name = "x" * 300 + ".yaml"
    return Expect(
        ["validate", name],
        first=re.escape(f"{'x' * 40}… (305 characters): error: file name too long: 305 bytes in one name, at most 255"),
    )


@case(cpu=0.5, mib=60)
def long_path(d: Path, sandbox: Sandbox) -> Expect:
    path = "/".join(["d" * 200] * 25) + "/spec.yaml"
    return Expect(
        ["validate", path],
        first=re.escape(f"{'d' * 40}… (5,034 characters): error: path too long: 5,034 bytes, at most 4,095"),
    )


@case(cpu=0.5, mib=60)
def odd_file_name(d: Path, sandbox: Sandbox) -> Expect:
    """A name with a newline, an escape sequence and a bidi override: printed escaped."""
    name = "a\nb\x1b[31m\u202ec.yaml"
    write(d, name, HEAD + "model: {type: linear, out_features: 0}\n")
    return Expect(
        ["validate", name], first=re.escape("a\\nb\\x1b[31m\\u202ec.yaml:3:") + r"\d+: error: .*out_features.*"
    )


@case(cpu=1.0, mib=80)
def save_past_path_max(d: Path, sandbox: Sandbox) -> Expect:
    """An output whose path fits PATH_MAX but whose temporary file's would not: one line."""
    folder = d
    while len(str(folder)) < 3_900:
        folder = folder / ("d" * 200)
    folder.mkdir(parents=True)
    target = folder / ("m" * (4_090 - len(str(folder)) - 13) + ".safetensors")
    return Expect(
        ["save", ROOT / "configs/mlp.yaml", "-o", target], first=r"-o .*: error: cannot write: File name too long"
    )


@case(cpu=3.0, mib=150)
def cache_folder_names(d: Path, sandbox: Sandbox) -> Expect:
    """`layers` with a cache folder named at NAME_MAX (cached) or past it (answered uncached)."""
    long = d / ("c" * 250)
    first = sandbox.run(["layers"], d, env={"NETCFG_CACHE_DIR": str(long)})
    assert first.code == 0 and first.stderr == "", first.stderr
    assert [p.name.startswith("catalogue-") for p in long.iterdir() if p.is_file()] == [True]
    return Expect(["layers"], code=0, first="layers:", env={"NETCFG_CACHE_DIR": str(d / ("c" * 300))})


@case(cpu=0.5, mib=60)
def invisible_characters(d: Path, sandbox: Sandbox) -> Expect:
    """A zero-width space in a key and a bidi override in a name: escaped, never printed raw."""
    name = write(d, "bidi.yaml", HEAD + 'model: {type: linear, out_\u200bfeatures: 4, name: "a\u202eb"}\n')
    return Expect(
        ["validate", name],
        first=at(name, "unknown key 'out_\\u200bfeatures' for linear; did you mean 'out_features'?"),
        lines=2,
        last=at(name, "'name': a module name has no invisible characters (line breaks, controls)"),
    )


@case(cpu=6.0, mib=300)
def csv_injection(d: Path, sandbox: Sandbox) -> Expect:
    """`inspect --format csv` of a file of 10,000 tensors named as spreadsheet formulas."""
    starts = ["=", "+", "-", "@", "\t", "\r"]
    names = [f'{starts[i % 6]}HYPERLINK("http://x/{i}")' for i in range(10_000)]
    _safetensors(d / "formulas.safetensors", _scalars(names), 4 * len(names))
    return Expect(
        ["inspect", "formulas.safetensors", "--params", "--format", "csv"],
        code=0,
        first="name,dtype,shape,bytes",
        check=lambda ran: _csv_names_neutralized(ran, names),
    )


@case(cpu=2.5, mib=120)
def user_temporaries_survive(d: Path, sandbox: Sandbox) -> Expect:
    """2,000 of a user's files named like temporary files, a day old, beside the output of `save`:
    none is removed (netcfg removes only the temporaries it recorded)."""
    old = time.time() - 86_400
    mine = [f".m.safetensors.{i}.tmp" for i in range(1000)]
    mine += [f".m.safetensors.netcfg-{i:032x}.tmp" for i in range(998)] + [".tmpab12cd", ".m.safetensors.tmp"]
    for name in mine:
        (d / name).write_text("mine")
        os.utime(d / name, (old, old))
    return Expect(
        ["save", ROOT / "configs/mlp.yaml", "-o", "m.safetensors"],
        code=0,
        first=r"wrote m\.safetensors: .*",
        check=lambda ran: _all_there(d, mine + ["m.safetensors"]),
    )


# ---------------------------------------------------------------- checks of a result


def _csv_names_neutralized(ran: Ran, names: list[str]) -> None:
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(ran.stdout, newline="")))
    shown = {row["name"] for row in rows if row["name"]}
    expected = {"'" + n.replace("\r", "\\r") for n in names}  # a carriage return is shown escaped
    assert shown >= expected, sorted(expected - shown)[:3]
    assert not any(cell[:1] in ("=", "+", "-", "@", "\t", "\r") for row in rows for cell in row.values() if cell)


def _all_there(folder: Path, names: list[str]) -> None:
    present = set(os.listdir(folder))
    missing = [n for n in names if n not in present]
    assert not missing, f"removed: {missing[:5]} ({len(missing)} files)"
    assert all((folder / n).read_text() == "mine" for n in names if n != "m.safetensors")


def check_outcome(expect: Expect, ran: Ran) -> None:
    assert "Traceback" not in ran.stderr, ran.stderr[-2000:]
    assert ran.code == expect.code, f"exit {ran.code}, expected {expect.code}: {ran.stderr[:1000]}"
    if expect.code == 2:
        lines = ran.stderr.splitlines()
        assert len(lines) == expect.lines, lines[:5] + [f"... {len(lines)} lines"]
        for line in lines:
            assert LOCATED.match(line), f"not one located error: {line[:400]!r}"
            assert len(line) <= 400, f"{len(line)} characters: {line[:200]!r}"
            shown = {unicodedata.category(c) for c in line}
            assert not shown & _UNPRINTABLE, f"raw control or invisible characters in {line!r}"
        assert re.fullmatch(expect.first, lines[0]), lines[0]
        assert not expect.last or re.fullmatch(expect.last, lines[-1]), lines[-1]
    else:
        first = next((line for line in ran.stdout.splitlines() if line.strip()), "")
        assert re.fullmatch(expect.first, first), first
    if expect.check is not None:
        expect.check(ran)


# ---------------------------------------------------------------- the test, and the script


@pytest.fixture(scope="module")
def sandbox():
    box = Sandbox()
    yield box
    box.close()


def run_case(name: str, folder: Path, sandbox: Sandbox) -> tuple[Expect, Ran]:
    spec = CASES[name]
    expect = spec.make(folder, sandbox)
    wall_limit = max(60.0, 20 * spec.cpu)  # only a stalled command comes near it
    ran = sandbox.run(expect.args, folder, wall_limit, env=expect.env)
    return expect, ran


@pytest.mark.parametrize("name", list(CASES))
def test_red_team(name, sandbox, tmp_path):
    spec = CASES[name]
    expect, ran = run_case(name, tmp_path, sandbox)
    check_outcome(expect, ran)
    assert ran.cpu_seconds < spec.cpu, f"{ran.cpu_seconds:.2f} s of CPU, bound {spec.cpu} s"
    assert ran.growth_mib < spec.mib, f"peak RSS grew {ran.growth_mib:.0f} MiB, bound {spec.mib} MiB"


def main(words: list[str]) -> int:
    import tempfile

    names = [n for n in CASES if not words or any(w in n for w in words)]
    failed = 0
    box = Sandbox()
    print(f"{'case':32s} {'exit':>4s} {'cpu s':>7s} {'bound':>6s} {'wall s':>7s} {'MiB':>6s} {'bound':>6s}")
    try:
        for name in names:
            spec = CASES[name]
            with tempfile.TemporaryDirectory(prefix="netcfg-redteam-") as scratch:
                expect, ran = run_case(name, Path(scratch), box)
                try:
                    check_outcome(expect, ran)
                    verdict = "ok" if ran.cpu_seconds < spec.cpu and ran.growth_mib < spec.mib else "OVER"
                except AssertionError as exc:
                    verdict = f"WRONG: {str(exc)[:150]}"
            failed += verdict != "ok"
            print(
                f"{name:32s} {ran.code:4d} {ran.cpu_seconds:7.2f} {spec.cpu:6.1f} {ran.wall_seconds:7.2f} "
                f"{ran.growth_mib:6.0f} {spec.mib:6.0f}  {verdict}",
                flush=True,
            )
    finally:
        box.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
