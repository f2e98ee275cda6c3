#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine: the Debian packages that
# the tests run for real (registry, Prometheus, Alertmanager, and Chromium for the page tests)
# and a venv with the package.
set -euo pipefail
cd "$(dirname "$0")/.."

debian_packages=(prometheus prometheus-alertmanager docker-registry chromium)
missing=()
for binary_and_package in promtool:prometheus prometheus:prometheus amtool:prometheus-alertmanager \
  prometheus-alertmanager:prometheus-alertmanager docker-registry:docker-registry \
  chromium:chromium; do
  command -v "${binary_and_package%%:*}" >/dev/null 2>&1 || missing+=("${binary_and_package##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: missing ${missing[*]}; run as root or: apt-get install ${debian_packages[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${debian_packages[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
