#!/usr/bin/env bash
# Installs the Debian 12 packages fp4z needs to build, test and benchmark (run as root); skips what is present.
set -euo pipefail
pkgs=(g++ cmake ninja-build pkg-config nlohmann-json3-dev libcli11-dev libxxhash-dev libzstd-dev
      libgtest-dev libgmock-dev libbenchmark-dev python3 python3-numpy zstd xz-utils bzip2 unicode-data ccache python3-venv)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "fp4z: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
