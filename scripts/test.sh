#!/usr/bin/env bash
# README command 2: installs what is missing, builds everything, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
if [ -f package-lock.json ]; then npm ci --silent --no-audit --no-fund >/dev/null; fi
bash scripts/build.sh
cd build
ctest --output-on-failure -j"$(nproc)" --timeout 900
