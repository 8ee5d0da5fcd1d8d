#!/usr/bin/env bash
# Configures and builds fp4z (Release) into build/; the CLI is build/fp4z.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" "$@"
