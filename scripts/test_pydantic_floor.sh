#!/usr/bin/env bash
# The spec and catalogue tests under the lowest pydantic pyproject.toml allows (its floor changes
# validation messages, JSON Schemas and the catalogue cache's stamp). A venv over the installed
# packages with only pydantic swapped; an install that cannot reach the package index is skipped
# (and says so), a failing test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
floor=$(python -c "import re,tomllib; d=tomllib.load(open('pyproject.toml','rb'))['project']['dependencies']; print(next(re.search(r'>=([0-9.]+)', x).group(1) for x in d if x.startswith('pydantic')))")
venv=$(mktemp -d)/floor
trap 'rm -rf "$(dirname "$venv")"' EXIT
python -m venv --system-site-packages "$venv"
if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check "pydantic==${floor}.*" >/dev/null 2>&1; then
    echo "pydantic floor check skipped: pydantic==${floor}.* could not be installed"
    exit 0
fi
echo "pydantic floor: $("$venv/bin/python" -c 'import pydantic; print(pydantic.VERSION)')"
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/spec tests/catalogue tests/actions/test_catalogue.py tests/cli/test_golden.py
