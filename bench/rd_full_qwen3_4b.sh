#!/bin/sh
# Full-size rd run with calibration on a Qwen3-4B-shaped BF16 checkpoint: wall time, CPU time and peak RSS.
# usage: bench/rd_full_qwen3_4b.sh WORK_DIR [CALIBRATION_TEXT] [SEQS]
#   WORK_DIR/src is generated with bench/gen_full_qwen3_4b.sh when missing (~8 GB of disk, a few minutes).
#   The default calibration text is the TinyStories validation file of the fixtures; SEQS defaults to 16
#   sequences of 512 tokens (see docs/quantize.md, "calibration size"). Run it on a quiet machine.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$1
text=${2:-$here/../../shared/fixtures/eval/tinystories/tinystories_val.txt}
seqs=${3:-16}
fp4z=${FP4Z:-$here/../build/fp4z}
mkdir -p "$work"
[ -d "$work/src" ] || sh "$here/gen_full_qwen3_4b.sh" "$work/src"
for mode in nocal cal; do
  extra=""
  [ "$mode" = cal ] && extra="--calibration $text --calibration-seqs $seqs"
  /usr/bin/time -v "$fp4z" quantize --source "$work/src" --out "$work/rd-$mode" --method rd --lambda 1e-6 $extra --force \
    2> "$work/rd-$mode.time.log" || { tail -n 30 "$work/rd-$mode.time.log" >&2; exit 1; }
  echo "== rd $mode"
  grep -E 'Elapsed|User time|System time|Maximum resident' "$work/rd-$mode.time.log"
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print('bits/weight', j['bits_per_weight'], 'seconds', j['seconds'])" \
    "$work/rd-$mode/fp4z_rd_report.json"
done
