#!/usr/bin/env bash
# The one command that runs every check: lint, format, types, generated files, and the whole
# pytest suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
# Every generated file must be what `make generate` writes; the stale ones are named.
# shellcheck disable=SC2086  # RULE_FLAGS is a list of flags
.venv/bin/python -m exporter generate all --check ${RULE_FLAGS:-}
exec .venv/bin/pytest -n 2 --dist loadfile "$@"
