"""Golden error outputs: each bad spec prints exactly the messages a user should see.

Every tests/golden/specs/**/NAME.yaml is run as ``netcfg validate tests/golden/specs/NAME.yaml``
from the repository root; it must exit 2, print nothing on stdout, no traceback anywhere, and
exactly NAME.expected on stderr. ``validate`` builds on the meta device, so shape, tie and init
errors are covered too. Regenerate with ``python tests/golden/regen.py`` and review every diff
by hand (see its docstring); specs with a ``# xfail: REASON`` line hold a hand-written
``.expected`` (what netcfg should print) and are strict xfails.

The command-line cases below (bad --set, missing files, devices) are written out in full here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _load_regen():
    spec = importlib.util.spec_from_file_location("golden_regen", ROOT / "tests" / "golden" / "regen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


golden = _load_regen()  # one definition of how a case is run, shared with the regenerator


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def _spec_cases():
    for path in golden.spec_files():
        reason = golden.xfail_reason(path)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        yield pytest.param(path, id=path.relative_to(golden.SPECS).with_suffix("").as_posix(), marks=marks)


def test_corpus_is_complete():
    specs = golden.spec_files()
    assert len(specs) >= 30
    missing = [golden.relative(p) for p in specs if not p.with_suffix(".expected").exists()]
    assert not missing, f"no .expected for {missing}: run tests/golden/regen.py and review"
    orphans = [golden.relative(p) for p in golden.SPECS.rglob("*.expected") if not p.with_suffix(".yaml").exists()]
    assert not orphans, f".expected without a spec: {orphans}"


@pytest.mark.parametrize("path", list(_spec_cases()))
def test_golden_spec(path: Path):
    expected = path.with_suffix(".expected").read_text(encoding="utf-8")
    code, stdout, stderr = golden.run_cli(golden.validate_args(path))
    assert "Traceback" not in stdout + stderr, stderr
    assert code == 2, f"exit code {code}\nstdout: {stdout}\nstderr: {stderr}"
    assert stdout == ""
    assert stderr == expected


# ---------------------------------------------------------------- command-line cases

VALID = "tests/golden/cli/valid.yaml"
ABSENT_DEVICE = "tests/golden/cli/absent_device.yaml"
_ACCELERATOR = torch.cuda.is_available() or bool(
    getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
)
cpu_only = pytest.mark.skipif(_ACCELERATOR, reason="the message names the devices present: written for a CPU-only host")

CLI_CASES = [
    pytest.param(
        ["validate", VALID, "--set", "model.layrs.0.out_features=8"],
        "--set model.layrs.0.out_features=8: error: no key 'layrs' under model; did you mean 'layers'?\n",
        id="set-path-typo",
    ),
    pytest.param(
        ["validate", VALID, "--set", "model.layers.0.out_featurs=8"],
        "--set model.layers.0.out_featurs=8: error: unknown key 'out_featurs' for linear; "
        "did you mean 'out_features'?\n",
        id="set-new-key-typo",
    ),
    pytest.param(
        ["validate", VALID, "--set", "vars.widht=8"],
        "--set vars.widht=8: error: no key 'widht' under vars; did you mean 'width'?\n",
        id="set-var-typo",
    ),
    pytest.param(
        ["validate", VALID, "--set", "model.layers.0.out_features"],
        "--set model.layers.0.out_features: error: expected --set path.to.key=value\n",
        id="set-without-equals",
    ),
    pytest.param(
        ["validate", VALID, "--set", "=8"],
        "--set =8: error: expected --set path.to.key=value\n",
        id="set-empty-path",
    ),
    pytest.param(
        ["validate", VALID, "--set", "model.layers.0.out_features=abc"],
        "--set model.layers.0.out_features=abc: error: 'out_features' must be an integer, got 'abc'\n",
        id="set-wrong-type",
    ),
    pytest.param(
        ["validate", VALID, "--set", "model.layers.5.out_features=8"],
        "--set model.layers.5.out_features=8: error: '5' is not an index of the list at model.layers "
        "(it has 3 items)\n",
        id="set-index-out-of-range",
    ),
    pytest.param(
        ["validate", VALID, "--set", "model.layers.1.type.kind=relu"],
        "--set model.layers.1.type.kind=relu: error: cannot set 'kind' under model.layers.1.type\n",
        id="set-under-a-scalar",
    ),
    pytest.param(
        ["validate", VALID, "--set", "vars.width=[8"],
        "--set vars.width=[8: error: bad value: invalid YAML: expected ',' or ']', but got '<stream end>' "
        "(in the flow sequence that starts at line 1, column 1)\n",
        id="set-bad-yaml-value",
    ),
    pytest.param(
        ["validate", VALID, "--set", "vars.width=true"],
        "tests/golden/cli/valid.yaml:8:36: error: 'out_features' must be an integer, got true "
        "(from --set vars.width=true)\n",
        id="set-var-of-wrong-type",
    ),
    pytest.param(
        ["validate", VALID, "--set", "vars.width=0"],
        "tests/golden/cli/valid.yaml:8:36: error: 'out_features' must be greater than or equal to 1, got 0 "
        "(from --set vars.width=0)\n",
        id="set-var-out-of-range",
    ),
    pytest.param(
        ["validate", VALID, "--set", "model.layers.0.out_features=0", "--set", "nope=1"],
        "--set nope=1: error: unknown key 'nope' at the top level\n"
        "--set model.layers.0.out_features=0: error: 'out_features' must be greater than or equal to 1, got 0\n",
        id="set-several-problems",
    ),
    pytest.param(
        ["validate", VALID, "--set", "vars.width=" + "9" * 200],
        f"--set vars.width={'9' * 200}: error: bad value: an integer of 200 digits is too large\n",
        id="set-huge-integer",
    ),
    pytest.param(
        ["bench", VALID, "--warmup", "-2s"],
        "--warmup -2s: error: must be between 0 and 3600 seconds, got '-2'\n",
        id="bench-negative-warmup",
    ),
    # Numbers a user types: ASCII digits, finite, bounded (netcfg.numbers), one line naming the flag.
    pytest.param(
        ["validate", VALID, "--set", "model.layers.--1.out_features=8"],
        "--set model.layers.--1.out_features=8: error: '--1' is not an index of the list at model.layers "
        "(it has 3 items)\n",
        id="set-index-double-minus",
    ),
    pytest.param(
        ["validate", VALID, "--set", "model.layers.\u00b2=8"],
        "--set model.layers.\u00b2=8: error: cannot set '\u00b2' under model.layers\n",
        id="set-index-superscript-digit",
    ),
    pytest.param(
        ["validate", VALID, "--set", "model.layers.\u0663.out_features=8"],
        "--set model.layers.\u0663.out_features=8: error: '\u0663' is not an index of the list at model.layers "
        "(it has 3 items)\n",
        id="set-index-arabic-digit",
    ),
    pytest.param(
        ["build", VALID, "--seed", "\u00b2"],
        "--seed \u00b2: error: expected an integer, got '\u00b2'\n",
        id="seed-superscript-digit",
    ),
    pytest.param(
        ["build", VALID, "--seed", "9223372036854775808"],
        "--seed 9223372036854775808: error: must be between 0 and 9223372036854775807, got '9223372036854775808'\n",
        id="seed-past-int64",
    ),
    pytest.param(
        ["inspect", VALID, "--depth", "1_0"],
        "--depth 1_0: error: expected an integer, got '1_0'\n",
        id="depth-underscore",
    ),
    pytest.param(
        ["bench", VALID, "--min-time", "inf"],
        "--min-time inf: error: expected a finite number, got 'inf'\n",
        id="bench-min-time-inf",
    ),
    pytest.param(
        ["bench", VALID, "--min-time", "1e999"],
        "--min-time 1e999: error: expected a finite number, got '1e999'\n",
        id="bench-min-time-overflow",
    ),
    pytest.param(
        ["bench", VALID, "--min-time", "86400"],
        "--min-time 86400: error: must be between 0 and 3600 seconds, got '86400'\n",
        id="bench-min-time-huge",
    ),
    pytest.param(
        ["bench", VALID, "--warmup", "nans"],
        "--warmup nans: error: expected a finite number, got 'nan'\n",
        id="bench-warmup-nan-seconds",
    ),
    pytest.param(
        ["bench", VALID, "--warmup", "\u0663"],
        "--warmup \u0663: error: expected a number of iterations (10) or seconds (2s), got '\u0663'\n",
        id="bench-warmup-arabic-digit",
    ),
    pytest.param(
        ["bench", VALID, "--sweep", "batch=1,\u00b2"],
        "--sweep batch=1,\u00b2: error: expected an integer, got '\u00b2'\n",
        id="bench-sweep-superscript-digit",
    ),
    pytest.param(
        ["bench", VALID, "--device", ","],
        "--device ,: error: no device named: give one or several, e.g. cpu or cpu,cuda\n",
        id="bench-device-empty-list",
    ),
    pytest.param(
        ["bench", VALID, "--mode", "train", "--set", "model.trainable=false"],
        "--mode train: error: nothing to train: the model has no trainable parameters (every layer is frozen or has "
        "none); time its forward pass with --mode inference\n",
        id="bench-train-nothing-trainable",
    ),
    pytest.param(
        ["validate", "tests/golden/cli/no_such_spec.yaml"],
        "tests/golden/cli/no_such_spec.yaml: error: no such file\n",
        id="missing-spec-file",
    ),
    pytest.param(
        ["validate", "tests/golden/cli"],
        "tests/golden/cli: error: is a directory, not a spec file\n",
        id="directory-as-spec",
    ),
    pytest.param(
        ["validate"],
        "error: Missing argument 'SPEC' (see 'netcfg validate --help')\n",
        id="missing-spec-argument",
    ),
    pytest.param(
        ["inspect", VALID, "--format", "xml"],
        "error: Invalid value for '--format': 'xml' is not one of 'table', 'json', 'csv' "
        "(see 'netcfg inspect --help')\n",
        id="bad-choice",
    ),
    pytest.param(
        ["validate", VALID, "--bogus"],
        "error: No such option: --bogus (see 'netcfg validate --help')\n",
        id="unknown-option",
    ),
    pytest.param(
        ["build", VALID, "--device", "cuda:3"],
        "--device cuda:3: error: device 'cuda:3' is not available: no CUDA GPU here (present: cpu)\n",
        id="device-absent-gpu",
        marks=cpu_only,
    ),
    pytest.param(
        ["build", VALID, "--device", "gpu"],
        "--device gpu: error: unknown device 'gpu' (use auto, cpu, cuda, cuda:N, mps or meta)\n",
        id="device-unknown",
    ),
    pytest.param(
        ["build", ABSENT_DEVICE],
        "tests/golden/cli/absent_device.yaml:3:9: error: device 'cuda' is not available: no CUDA GPU here "
        "(present: cpu)\n",
        id="spec-device-absent",
        marks=cpu_only,
    ),
    pytest.param(
        ["run", VALID, "--device", "meta"],
        "--device meta: error: cannot run on the meta device: it holds no values (use validate or inspect)\n",
        id="run-on-meta",
    ),
    pytest.param(
        ["export", VALID, "-o", "never.pt2", "--device", "meta"],
        "--device meta: error: cannot export on the meta device: it holds no weights to write (use --device cpu)\n",
        id="export-on-meta",
    ),
    pytest.param(
        ["export", VALID, "-o", VALID],
        f"-o {VALID}: error: exists and is not a .pt2 program exported by netcfg (the spec itself?): netcfg "
        "replaces only its own kind of file; remove it or pick another name\n",
        id="export-over-the-spec",
    ),
    pytest.param(
        ["export", VALID, "-o", "never.onnx", "--format", "pt2"],
        "-o never.onnx: error: --format pt2 writes a .pt2 program: end its name in .pt2 (or drop --format)\n",
        id="export-format-against-suffix",
    ),
    pytest.param(
        ["export", "configs/chapter/mlp_trained.safetensors", "-o", "never.pt2", "--no-memory-check"],
        "--no-memory-check: error: does not apply to a checkpoint: it is read as `netcfg load` reads it\n",
        id="export-checkpoint-ignored-flag",
    ),
]


@pytest.mark.parametrize("args, expected", CLI_CASES)
def test_golden_command_line(args: list[str], expected: str):
    code, stdout, stderr = golden.run_cli(args)
    assert "Traceback" not in stdout + stderr, stderr
    assert code == 2, f"exit code {code}\nstdout: {stdout}\nstderr: {stderr}"
    assert stdout == ""
    assert stderr == expected


def test_the_command_line_base_spec_is_valid():
    code, stdout, stderr = golden.run_cli(["validate", VALID])
    assert (code, stderr) == (0, ""), stderr
    assert stdout == f"{VALID}: ok (404 parameters, output shape [2, 4])\n"
