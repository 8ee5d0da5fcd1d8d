#!/usr/bin/env bash
# Creates or refreshes the project-local Python environment .venv from requirements-test.txt (the interop suite's real libraries).
# A re-run with the environment up to date costs well under a second: the requirements' hash is stamped in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
req=requirements-test.txt
stamp=.venv/.fp4z-requirements.sha256
want=$( (sha256sum "$req"; python3 --version) | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "fp4z: installing the Python test environment into .venv (first time: a few minutes, torch is large)" >&2
start=$(date +%s)
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
echo "fp4z: .venv ready in $(( $(date +%s) - start )) s" >&2
