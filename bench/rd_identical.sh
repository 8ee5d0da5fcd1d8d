#!/usr/bin/env bash
# Checks that this build's `fp4z quantize --method rd` (no calibration) writes byte-identical safetensors
# to another build's (e.g. main's) on the one-layer BF16 checkpoint and on stories260K (F32):
# usage: bench/rd_identical.sh OTHER_FP4Z [WORK_DIR] (WORK_DIR gets one-layer from bench/rd_speed.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
OTHER=$1
WORK=${2:-build/rd-speed}
FIX=${FP4Z_FIXTURES:-../shared/fixtures}
mkdir -p "$WORK"
[ -d "$WORK/stories260K" ] || build/fp4z import-llama2c "$FIX/stories260K/stories260K.bin" --tokenizer "$FIX/stories260K/tok512.bin" --out "$WORK/stories260K" --force -q
[ -f "$WORK/one-layer/model.safetensors" ] || { echo "make $WORK/one-layer first (bench/rd_speed.sh $WORK)"; exit 2; }
fail=0
check() {  # NAME SOURCE ARGS...
  local name=$1 src=$2
  shift 2
  rm -rf "$WORK/id-a-$name" "$WORK/id-b-$name"
  build/fp4z quantize --source "$src" --out "$WORK/id-a-$name" --method rd "$@" -q
  "$OTHER" quantize --source "$src" --out "$WORK/id-b-$name" --method rd "$@" -q
  for f in "$WORK/id-a-$name"/*.safetensors; do
    if cmp -s "$f" "$WORK/id-b-$name/$(basename "$f")"; then echo "$name $(basename "$f"): identical"; else echo "$name $(basename "$f"): DIFFERENT"; fail=1; fi
  done
  rm -rf "$WORK/id-a-$name" "$WORK/id-b-$name"
}
check layer-lambda "$WORK/one-layer" --lambda 5e-6
check layer-target "$WORK/one-layer" --target-bits 3.7
check layer-lambda0-2threads "$WORK/one-layer" --lambda 0 --threads 2
for t in 3.4 3.7 4.0; do check "stories-target-$t" "$WORK/stories260K" --target-bits "$t"; done
check stories-lambda "$WORK/stories260K" --lambda 1e-3
check stories-tensor-tables "$WORK/stories260K" --lambda 1e-3 --rd-tables tensor
exit $fail
