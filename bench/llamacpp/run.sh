#!/usr/bin/env bash
# Side-by-side benchmark: fp4z (model_bench) vs llama.cpp (llama-bench) on the same weights, alternating, median of rounds.
# usage: bench/llamacpp/run.sh [NVFP4_CHECKPOINT_DIR] [--rounds N] [--threads T] [--tg N] [--pp "128 512"]
#   Default checkpoint: /work/bench-data/qwen3-4b-nvfp4 (made once: bench/gen_full_qwen3_4b.sh -> fp4z quantize,
#   plus the Qwen3 tokenizer fixture; needs ~11 GB free under /work/bench-data). The checkpoint must hold
#   tokenizer.json and a vocabulary of >= 151643 tokens (model_bench draws prompt ids below that).
#   Needs build/fp4z and build/model_bench (bash scripts/build.sh); builds llama-bench via build.sh.
#   Prints the llama.cpp commit, then a markdown table of median tokens/s.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
model=/work/bench-data/qwen3-4b-nvfp4
rounds=3 threads=2 tg=64 pps="128 512"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --tg) tg=$2; shift 2 ;;
    --pp) pps=$2; shift 2 ;;
    -*) echo "$0: unknown option $1" >&2; exit 2 ;;
    *) model=$1; shift ;;
  esac
done
fp4z=$root/build/fp4z mb=$root/build/model_bench
[ -x "$fp4z" ] && [ -x "$mb" ] || { echo "$0: build fp4z first (bash scripts/build.sh)" >&2; exit 2; }
bash bench/llamacpp/build.sh
lb=$root/build-llamacpp/cmake/bin/llama-bench

if [ ! -d "$model" ]; then
  [ "$model" = /work/bench-data/qwen3-4b-nvfp4 ] || { echo "$0: $model does not exist" >&2; exit 2; }
  df -h /work >&2
  mkdir -p /work/bench-data
  [ -d /work/bench-data/qwen3-4b-bf16 ] || bash bench/gen_full_qwen3_4b.sh /work/bench-data/qwen3-4b-bf16
  "$fp4z" quantize --source /work/bench-data/qwen3-4b-bf16 --out "$model" --threads "$threads"
fi
if [ ! -f "$model/tokenizer.json" ]; then
  cp "$root/../shared/fixtures/qwen3-tokenizer/tokenizer.json" "$root/../shared/fixtures/qwen3-tokenizer/tokenizer_config.json" "$model/"
fi
gg=${GGUF_DIR:-$model.gguf}
mkdir -p "$gg"
for t in nvfp4 q4_0; do
  if [ ! -f "$gg/$t.gguf" ]; then
    /usr/bin/time -f "export-gguf $t: %e s wall" "$fp4z" export-gguf "$model" -o "$gg/$t.gguf" --type "$t" --threads "$threads"
  fi
done

log=$(mktemp -d)
pp_csv=$(echo $pps | tr ' ' ',')
for r in $(seq 1 "$rounds"); do
  echo "round $r/$rounds" >&2
  for pp in $pps; do
    "$mb" run "$model" "$threads" "$pp" "$tg" > "$log/fp4z-f32-$pp-$r.json"
    "$mb" run "$model" "$threads" "$pp" 0 int8 > "$log/fp4z-int8-$pp-$r.json"
  done
  for t in q4_0 nvfp4; do
    "$lb" -m "$gg/$t.gguf" -t "$threads" -p "$pp_csv" -n "$tg" -r 1 -o json > "$log/llama-$t-$r.json"
  done
done

python3 - "$log" "$rounds" "$pps" "$tg" "$threads" "$(cat build-llamacpp/build-info.txt | head -1)" <<'PY'
import glob, json, os, statistics, sys
log, rounds, pps, tg, threads, commit = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4], sys.argv[5], sys.argv[6]
med = lambda xs: statistics.median(xs) if xs else float("nan")
rows = []
f32 = {pp: [json.load(open(f)) for f in glob.glob(f"{log}/fp4z-f32-{pp}-*.json")] for pp in pps}
i8 = {pp: [json.load(open(f)) for f in glob.glob(f"{log}/fp4z-int8-{pp}-*.json")] for pp in pps}
rows.append(("fp4z NVFP4 (stored head), exact f32", [med([j["pp_tok_per_s"] for j in f32[pp]]) for pp in pps],
             med([j["tg_tok_per_s"] for pp in pps for j in f32[pp]])))
rows.append(("fp4z NVFP4, `--int8-act` prompts", [med([j["pp_tok_per_s"] for j in i8[pp]]) for pp in pps], None))
for t, label in (("q4_0", "llama.cpp Q4_0 (same-bytes head)"), ("nvfp4", "llama.cpp NVFP4 (same weights)")):
    runs = [json.load(open(f)) for f in glob.glob(f"{log}/llama-{t}-*.json")]
    pp_rates = [med([e["avg_ts"] for r in runs for e in r if e["n_prompt"] == int(pp) and e["n_gen"] == 0]) for pp in pps]
    tg_rate = med([e["avg_ts"] for r in runs for e in r if e["n_gen"] == int(tg) and e["n_prompt"] == 0])
    rows.append((label, pp_rates, tg_rate))
print(f"\n{commit}; {threads} threads, median of {rounds} alternating rounds, tg = {tg} tokens; load average {open('/proc/loadavg').read().split()[:3]}\n")
print("| engine, linears (head) | " + " | ".join(f"pp{pp} tok/s" for pp in pps) + " | generation tok/s |")
print("|---|" + "---|" * (len(pps) + 1))
for label, pp_rates, tg_rate in rows:
    print(f"| {label} | " + " | ".join(f"{x:.2f}" for x in pp_rates) + " | " + ("(same path)" if tg_rate is None else f"{tg_rate:.2f}") + " |")
PY
rm -rf "$log"
