#!/bin/bash
# Builds the libFuzzer targets (clang++, ASan+UBSan, -DFP4Z_FUZZ=ON) and runs each for a while.
# usage: scripts/fuzz.sh [seconds per target, default 300] [build dir, default build-fuzz]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-300}
B=${2:-build-fuzz}
SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -g -O1"
cmake -S . -B "$B" -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFP4Z_FUZZ=ON -DFP4Z_TESTS=OFF -DFP4Z_BENCH=OFF -DCMAKE_CXX_FLAGS="$SAN" >/dev/null
cmake --build "$B" -j2 --target container_fuzz chunk_codec_fuzz fp4z
# Seed corpus: a tiny generated checkpoint, compressed with this build.
SEED=$B/seed
rm -rf "$SEED" && mkdir -p "$SEED/ckpt" "$B/corpus_container" "$B/corpus_chunk"
/usr/bin/python3 bench/codec_make_checkpoint.py "$SEED/ckpt" --layers 1 --hidden 64 --inter 128 --vocab 64 >/dev/null
printf 'hello fp4z\n' > "$SEED/ckpt/readme.txt"
"$B/fp4z" compress "$SEED/ckpt" -o "$B/corpus_container/seed.fp4z" --force -q --zstd-level 3 --chunk-size 64KiB
for f in "$SEED"/ckpt/*; do head -c 5000 "$f" > "$B/corpus_chunk/$(basename "$f")"; done
for t in container_fuzz chunk_codec_fuzz; do
  c=$B/corpus_${t%_fuzz}
  [ "$t" = chunk_codec_fuzz ] && c=$B/corpus_chunk
  [ "$t" = container_fuzz ] && c=$B/corpus_container
  echo "== $t for $SECS s"
  "$B/$t" "$c" -max_total_time="$SECS" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -15
done
