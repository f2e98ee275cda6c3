#!/usr/bin/env bash
# Sets up the project and runs the simulator-backed demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/promotion-exporter demo "$@"
