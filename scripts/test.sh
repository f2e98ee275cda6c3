#!/usr/bin/env bash
# The one command that runs every check: lint, format, and the whole pytest suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/pytest -n 2 --dist loadfile "$@"
