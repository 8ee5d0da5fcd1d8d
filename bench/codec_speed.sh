#!/bin/bash
# Single-core container speeds as CPU time (user+sys, 1 thread), alternating two fp4z builds, beside
# zstd on the same bytes: the numbers of docs/benchmarks-compression.md, rerunnable on a quiet machine.
# usage: [DEC_REPEAT=5] bench/codec_speed.sh NEW_FP4Z BASE_FP4Z CKPT_DIR WORKDIR [ROUNDS=3] [ZSTD_SLICE_MB=32]
#   NEW_FP4Z / BASE_FP4Z: two builds (BASE may equal NEW); CKPT_DIR: an NVFP4 checkpoint directory;
#   WORKDIR: scratch space (holds one container per build and a tar slice).
# Prints per operation the median over ROUNDS of CPU seconds and MB/s of raw (checkpoint) bytes.
set -euo pipefail
NEW=$(realpath "$1"); BASE=$(realpath "$2"); CK=$(realpath "$3"); W=$4; ROUNDS=${5:-3}; SLICE_MB=${6:-32}
mkdir -p "$W"; W=$(realpath "$W")
DEC_REPEAT=${DEC_REPEAT:-5}
IN=$(du -sb "$CK" | cut -f1)
echo "input: $CK, $IN bytes; $(lscpu | sed -n 's/^Model name: *//p'); load: $(cut -d' ' -f1-3 /proc/loadavg)"
# CPU seconds (user+sys) of one command.
cpu() { /usr/bin/time -f "%U %S" -o "$W/.t" "$@" >/dev/null 2>&1; awk '{printf "%.3f", $1 + $2}' "$W/.t"; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
report() {  # name, bytes, list of seconds
  local m; m=$(echo "$3" | median)
  awk -v n="$1" -v b="$2" -v s="$m" 'BEGIN {printf "%-44s %8.3f CPU s  %8.1f MB/s\n", n, s, b / s / 1e6}'
}
declare -A T
for r in $(seq "$ROUNDS"); do
  for tag in base new; do
    bin=$BASE; [ $tag = new ] && bin=$NEW
    T[$tag-c]+=" $(cpu "$bin" compress "$CK" -o "$W/$tag.fp4z" --threads 1 --force -q)"
    T[$tag-cnv]+=" $(cpu "$bin" compress "$CK" -o "$W/$tag.fp4z" --threads 1 --force -q --no-verify)"
    # Decoding is fast: time DEC_REPEAT runs in one measurement (/usr/bin/time counts in 10 ms steps).
    t=$(cpu sh -c "for i in \$(seq $DEC_REPEAT); do '$bin' decompress '$W/$tag.fp4z' --test --threads 1; done")
    T[$tag-d]+=" $(awk -v t="$t" -v k="$DEC_REPEAT" 'BEGIN {printf "%.4f", t / k}')"
  done
done
cmp -s "$W/base.fp4z" "$W/new.fp4z" && echo "containers: identical bytes" || echo "containers: differ"
echo "sizes: base $(stat -c %s "$W/base.fp4z"), new $(stat -c %s "$W/new.fp4z") bytes"
for tag in base new; do
  report "$tag: compress (verify on)" "$IN" "${T[$tag-c]}"
  report "$tag: compress --no-verify" "$IN" "${T[$tag-cnv]}"
  report "$tag: decompress --test (decode + both checksums)" "$IN" "${T[$tag-d]}"
done
# zstd on a slice of the same bytes (zstd -19 runs at ~1-2 MB/s: a whole checkpoint takes hours).
tar -C "$(dirname "$CK")" -cf "$W/all.tar" "$(basename "$CK")"
head -c $((SLICE_MB << 20)) "$W/all.tar" > "$W/slice.tar"
rm -f "$W/all.tar"
SL=$(stat -c %s "$W/slice.tar")
z19=$(cpu zstd -19 -T1 -q -f "$W/slice.tar" -o "$W/slice.tar.zst")
zd=""; for r in $(seq "$ROUNDS"); do
  t=$(cpu sh -c "for i in \$(seq $DEC_REPEAT); do zstd -d -q -c '$W/slice.tar.zst' >/dev/null; done")
  zd+=" $(awk -v t="$t" -v k="$DEC_REPEAT" 'BEGIN {printf "%.4f", t / k}')"
done
report "zstd -19 -T1 (first $SLICE_MB MiB of the tar)" "$SL" "$z19"
report "zstd -d of that (to /dev/null)" "$SL" "$zd"
echo "zstd -19 slice ratio: $(awk -v a="$(stat -c %s "$W/slice.tar.zst")" -v b="$SL" 'BEGIN {printf "%.4f", a / b}')"
