#!/bin/bash
# Builds the libFuzzer targets (tests/fuzz/*_fuzz.cpp; clang++, ASan+UBSan, -DFP4Z_FUZZ=ON) and runs each.
# usage: scripts/fuzz.sh [seconds per target, default 300] [build dir, default build-fuzz]
# Each run starts from the committed corpus tests/fuzz/corpus/<target>/ and merges what it found back
# into it, minimized (-merge=1); commit the result (ctest replays it: fuzz_replay_<target>).
# FUZZ_TARGETS="container_fuzz ..." runs a subset; FP4Z_SEED_BIN names an fp4z binary used to make
# the seed container when this build's fp4z does not link.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-300}
B=${2:-build-fuzz}
TARGETS=${FUZZ_TARGETS:-$(for f in tests/fuzz/*_fuzz.cpp; do basename "$f" .cpp; done)}
SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -g -O1"
cmake -S . -B "$B" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFP4Z_FUZZ=ON -DFP4Z_TESTS=OFF -DFP4Z_BENCH=OFF -DCMAKE_CXX_FLAGS="$SAN" >/dev/null
# shellcheck disable=SC2086
cmake --build "$B" -j2 --target $TARGETS
SEED_BIN=${FP4Z_SEED_BIN:-}
if [ -z "$SEED_BIN" ] && cmake --build "$B" -j2 --target fp4z >/dev/null 2>&1; then SEED_BIN=$B/fp4z; fi
# Seeds: a tiny generated checkpoint, its files, and its .fp4z container.
SEED=$B/seed
rm -rf "$SEED" && mkdir -p "$SEED/ckpt"
/usr/bin/python3 bench/codec_make_checkpoint.py "$SEED/ckpt" --layers 1 --hidden 64 --inter 128 --vocab 64 >/dev/null
printf 'hello fp4z\n' > "$SEED/ckpt/readme.txt"
for t in $TARGETS; do
  c=$B/corpus_${t%_fuzz}
  mkdir -p "$c"
  case $t in
    container_fuzz)
      if [ -n "$SEED_BIN" ]; then
        "$SEED_BIN" compress "$SEED/ckpt" -o "$c/seed.fp4z" --force -q --zstd-level 3 --chunk-size 64KiB
      else
        echo "warning: no fp4z binary for the seed container; $t starts from an empty corpus"
      fi ;;
    chunk_codec_fuzz) for f in "$SEED"/ckpt/*; do head -c 5000 "$f" > "$c/$(basename "$f")"; done ;;
    safetensors_fuzz) cp "$SEED"/ckpt/*.safetensors "$c/" ;;
  esac
  committed=tests/fuzz/corpus/${t%_fuzz}
  mkdir -p "$committed"
  echo "== $t for $SECS s"
  "$B/$t" "$c" "$committed" -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -8
  # Minimize: keep only inputs that add coverage, merged into the committed corpus.
  m=$B/merged_${t%_fuzz}
  rm -rf "$m" && mkdir -p "$m"
  "$B/$t" -merge=1 "$m" "$committed" "$c" -max_len=65536 2>&1 | tail -2
  rm -rf "$committed" && mv "$m" "$committed"
done
