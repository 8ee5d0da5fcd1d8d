#!/bin/sh
# Generates a full-size Qwen3-4B-shaped BF16 checkpoint (all 398 tensors, ~8 GB, 3 shards) for benchmarks.
# usage: bench/gen_full_qwen3_4b.sh OUT_DIR [SEED]
# Streams tensor by tensor (peak memory ~100 MB); needs ~8.1 GB of free disk. Takes a few minutes.
set -eu
if [ $# -lt 1 ]; then
  echo "usage: $0 OUT_DIR [SEED]" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
out=$1
seed=${2:-0}
if [ -e "$out" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
  echo "$0: $out exists and is not empty" >&2
  exit 2
fi
/usr/bin/time -v /usr/bin/python3 "$here/../tests/py/gen_checkpoint.py" "$out" --full --model 4B --dtype bf16 \
  --shards 3 --seed "$seed" 2> "$out.gen-time.log" || { cat "$out.gen-time.log" >&2; exit 1; }
grep -E 'wrote|Elapsed|Maximum resident' "$out.gen-time.log"
du -sh "$out"
