"""Regenerate the golden error outputs: tests/golden/specs/NAME.expected for every NAME.yaml.

Each ``.expected`` file holds the exact stderr of ``netcfg validate tests/golden/specs/NAME.yaml``
run from the repository root (the path as passed, relative), through typer's CliRunner exactly as
tests/cli/test_golden.py runs it.

    python tests/golden/regen.py              # every spec
    python tests/golden/regen.py dup bool     # only specs whose name contains one of these words

A HUMAN MUST REVIEW EVERY DIFF this script makes (``git diff tests/golden``) before committing it.
Regenerating only records what netcfg prints today; it does not make it right. Read each changed
message as a user would: does it point at the offending value or key (line:col), say what is wrong
and how to fix it, report every problem of the file, and print no traceback? If not, do not bless
it: fix netcfg, or mark the case as a known failure (below).

Known failures: a spec whose leading comment has a line ``# xfail: REASON`` is a message judged
bad. Its ``.expected`` is written by hand and holds what netcfg *should* print; the test expects it
to fail (strict xfail, so a fix that prints exactly that makes the test fail until the marker is
removed). This script never overwrites those files. After fixing netcfg, delete the ``# xfail:``
line, run this script for that spec, and review the diff like any other.

Cases this script refuses to write (exit code other than 2, or a traceback) are listed at the end
and make it exit 1.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "tests" / "golden" / "specs"


def spec_files() -> list[Path]:
    return sorted(SPECS.rglob("*.yaml"))


def relative(path: Path) -> str:
    """The spec's path as passed on the command line: relative to the repository root."""
    return path.relative_to(ROOT).as_posix()


def xfail_reason(path: Path) -> str | None:
    """The reason in a leading ``# xfail: REASON`` comment line, if any."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        if line.startswith("# xfail:"):
            return line[len("# xfail:") :].strip()
    return None


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """Run netcfg in-process from the current directory; return (exit code, stdout, stderr).

    An exception that escapes the CLI (a crash) is appended to stderr as its traceback, so that
    it can never pass for an expected output.
    """
    from typer.testing import CliRunner

    from netcfg.cli.app import app

    result = CliRunner().invoke(app, args)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return result.exit_code, result.stdout, stderr


def validate_args(path: Path) -> list[str]:
    return ["validate", relative(path)]


def main(words: list[str]) -> int:
    import os

    os.chdir(ROOT)
    changed, skipped, refused = [], [], []
    for path in spec_files():
        name = relative(path)
        if words and not any(w in path.stem for w in words):
            continue
        reason = xfail_reason(path)
        if reason is not None:
            skipped.append(f"{name} (xfail: {reason})")
            continue
        code, _, stderr = run_cli(validate_args(path))
        if code != 2 or "Traceback" in stderr:
            refused.append(f"{name}: exit code {code}\n{stderr}")
            continue
        expected = path.with_suffix(".expected")
        old = expected.read_text(encoding="utf-8") if expected.exists() else None
        if old != stderr:
            expected.write_text(stderr, encoding="utf-8")
            changed.append(name)
    for name in changed:
        print(f"wrote    {Path(name).with_suffix('.expected').as_posix()}")
    for name in skipped:
        print(f"kept     {name}")
    for text in refused:
        print(f"REFUSED  {text}")
    print(f"{len(changed)} changed, {len(skipped)} hand-written (xfail) kept, {len(refused)} refused.")
    if changed:
        print("Review every change now: git diff tests/golden")
    return 1 if refused else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
