#!/usr/bin/env bash
# Prompt/generation A/B of two model_bench builds on a loaded machine: alternating runs, CPU seconds per token (medians).
# usage: bench/prompt_compare.sh BASE_MODEL_BENCH NEW_MODEL_BENCH [CHECKPOINT] [ROUNDS] [THREADS]
#   Per round and build: `run CHECKPOINT THREADS 128 0 int8` and `run CHECKPOINT THREADS 512 16 int8`.
#   Prints one line per run, then per build the medians of pp128/pp512 tokens per CPU-second and wall tokens/s,
#   and CPU seconds per generated token. CPU time (user+sys, all threads) is what a shared machine can compare;
#   on a quiet machine the wall-clock columns are the real speeds.
set -euo pipefail
base=${1:?base model_bench} new=${2:?new model_bench}
ckpt=${3:-/work/bench-data/q4b} rounds=${4:-3} threads=${5:-2}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for r in $(seq 1 "$rounds"); do
  for which in base new; do
    bin=$base; [ "$which" = new ] && bin=$new
    for args in "128 0" "512 16"; do
      line=$("$bin" run "$ckpt" "$threads" $args int8)
      echo "$which round $r load $(cut -d' ' -f1 /proc/loadavg): $line"
      echo "$which $line" >>"$log"
    done
  done
done
python3 - "$log" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    which, js = line.split(" ", 1)
    d = json.loads(js)
    rows.setdefault((which, d["pp_tokens"]), []).append(d)
print("| build | pp128 tok/CPU-s | pp128 tok/s | pp512 tok/CPU-s | pp512 tok/s | pp512/pp128 (CPU) | gen CPU s/token | peak RSS MB |")
print("|---|---|---|---|---|---|---|---|")
for which in ("base", "new"):
    a, b = rows[(which, 128)], rows[(which, 512)]
    m = lambda xs: statistics.median(xs)
    c128 = m([d["pp_tokens"] / d["pp_cpu_s"] for d in a]); c512 = m([d["pp_tokens"] / d["pp_cpu_s"] for d in b])
    print(f"| {which} | {c128:.2f} | {m([d['pp_tok_per_s'] for d in a]):.2f} | {c512:.2f} | {m([d['pp_tok_per_s'] for d in b]):.2f} | "
          f"{c512 / c128:.3f} | {m([d['tg_cpu_s'] / d['tg_tokens'] for d in b]):.3f} | {max(d['peak_rss_mb'] for d in a + b):.0f} |")
PY
