#!/usr/bin/env bash
# Issue 11's protocol on stories260K: calibration on the first half of tinystories_val.txt, evaluation on the
# second half; writes OUT/sweep.{json,csv,svg} and prints the markdown table with the "Done when" verdicts.
# usage: scripts/rd_sweep_stories260K.sh [OUT_DIR]   (default build/rd-sweep; ~20-40 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
FIX=${FP4Z_FIXTURES:-../shared/fixtures}
OUT=${1:-build/rd-sweep}
W=$OUT.work
mkdir -p "$W"
build/fp4z import-llama2c "$FIX/stories260K/stories260K.bin" --tokenizer "$FIX/stories260K/tok512.bin" --out "$W/stories260K" --force -q
TXT=$FIX/eval/tinystories/tinystories_val.txt
N=$(wc -c < "$TXT")
head -c $((N / 2)) "$TXT" > "$W/calib.txt"
tail -c +$((N / 2 + 1)) "$TXT" > "$W/eval.txt"
build/fp4z sweep --source "$W/stories260K" --calibration "$W/calib.txt" --eval "$W/eval.txt" --out "$OUT" \
  --rd-targets 3.15,3.22,3.3,3.45,3.6,3.67,3.75,3.9,4.05 --chunks 40 --force
python3 scripts/rd_sweep_table.py "$OUT/sweep.json"
