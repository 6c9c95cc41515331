#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need (Debian packages as
# root, the dev tools into .venv), runs the linters, then pytest. Extra arguments go to pytest.
#   scripts/test.sh                 everything (the real torch stack included: ~3 GB download)
#   scripts/test.sh -m 'not slow'   everything but the multi-GB installs
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "scripts/test.sh: needs Python 3.10 or newer ($python is $("$python" --version 2>&1))" >&2
  exit 1
fi

bash scripts/install-test-deps.sh

if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

# The linters are part of the suite: a lint failure fails the run.
.venv/bin/ruff check .
.venv/bin/mypy
mapfile -t shell_scripts < <(git ls-files '*.sh' 'scripts/*' | xargs grep -lE '^#!.*(ba)?sh' || true)
if [ "${#shell_scripts[@]}" -gt 0 ]; then
  .venv/bin/shellcheck "${shell_scripts[@]}"
fi
.venv/bin/hadolint runpod.Dockerfile.slim

export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/pytest "$@"
