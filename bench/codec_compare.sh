#!/bin/bash
# Whole-directory comparison: fp4z vs zstd -19 and xz -9 (sizes, single-core speeds, peak RSS) and the
# order-0 bound, on a synthetic NVFP4 checkpoint (bench/codec_make_checkpoint.py) or a given directory.
# usage: bench/codec_compare.sh FP4Z_BINARY WORKDIR [CKPT_DIR]
set -euo pipefail
BIN=$(realpath "$1"); W=$2; mkdir -p "$W"; W=$(realpath "$W")
HERE=$(cd "$(dirname "$0")" && pwd)
CK=${3:-$W/ckpt}
if [ ! -d "$CK" ]; then
  /usr/bin/python3 "$HERE/codec_make_checkpoint.py" "$CK" --layers 4 --hidden 2048 --inter 5632 --vocab 12000 --shards 2
fi
IN=$(du -sb "$CK" | cut -f1)
t() { /usr/bin/time -f "%e s wall, %U s user, %S s sys, %M KB peak RSS" "$@"; }
echo "input: $CK, $IN bytes"; lscpu | grep -E "Model name|^CPU\(s\)"
echo "--- fp4z compress (1 thread)"
t "$BIN" compress "$CK" -o "$W/c.fp4z" --threads 1 --force
echo "--- fp4z compress (all threads)"
t "$BIN" compress "$CK" -o "$W/c.fp4z" --force -q
echo "--- fp4z decode+verify, no writes (1 thread)"; t "$BIN" decompress "$W/c.fp4z" --test --threads 1
echo "--- fp4z decompress to disk (1 thread)"; rm -rf "$W/out"; t "$BIN" decompress "$W/c.fp4z" -o "$W/out" --threads 1 -q
(cd "$CK" && find . -type f | LC_ALL=C sort | xargs sha256sum) > "$W/a.sha"; (cd "$W/out" && sha256sum -c --quiet "$W/a.sha") && echo "restored: identical"
rm -rf "$W/out"
echo "--- fp4z decompress to disk (all threads)"; t "$BIN" decompress "$W/c.fp4z" -o "$W/out" -q; rm -rf "$W/out"
tar -C "$(dirname "$CK")" -cf "$W/c.tar" "$(basename "$CK")"
echo "--- zstd -19 (1 thread)"; t zstd -19 -T1 -q -f "$W/c.tar" -o "$W/c.tar.zst"
echo "--- zstd -d (1 thread) to /dev/null"; t zstd -d -q -c "$W/c.tar.zst" > /dev/null
echo "--- xz -9 (1 thread)"; t xz -9 -T1 -k -f -c "$W/c.tar" > "$W/c.tar.xz"
echo "--- xz -d to /dev/null"; t xz -d -c "$W/c.tar.xz" > /dev/null
echo "--- sizes"
printf "%-22s %14d\n" input "$IN" tar "$(stat -c %s "$W/c.tar")" fp4z "$(stat -c %s "$W/c.fp4z")" "zstd -19" "$(stat -c %s "$W/c.tar.zst")" "xz -9" "$(stat -c %s "$W/c.tar.xz")"
echo "--- order-0 bound of the tensors"; /usr/bin/python3 "$HERE/codec_bound.py" "$CK"
"$BIN" decompress "$W/c.fp4z" --list | head -3
