#!/usr/bin/env bash
# Side-by-side benchmark: fp4z (model_bench) vs llama.cpp (llama-bench) on the same weights, alternating, median of rounds.
# usage: bench/llamacpp/run.sh [NVFP4_CHECKPOINT_DIR] [--rounds N] [--threads T] [--tg N] [--pp "128 512"]
#   Default checkpoint: /work/bench-data/qwen3-4b-nvfp4 (made once: bench/gen_full_qwen3_4b.sh -> fp4z quantize,
#   plus the Qwen3 tokenizer fixture; needs ~11 GB free under /work/bench-data). The checkpoint must hold
#   tokenizer.json and a vocabulary of >= 151643 tokens (model_bench draws prompt ids below that).
#   Needs build/fp4z and build/model_bench (bash scripts/build.sh); builds llama-bench via build.sh.
#   Prints the llama.cpp commit, then a markdown table of median tokens/s (KEEP_LOG=DIR keeps the raw JSON;
#   BASE_MODEL_BENCH=PATH also times an older model_bench build in the same rounds).
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
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
# Engines alternate within each round (fp4z, llama.cpp Q4_0, fp4z, llama.cpp NVFP4) so load changes hit both.
first_pp=${pps%% *}
for r in $(seq 1 "$rounds"); do
  echo "round $r/$rounds (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  # fp4z default (int8 activations): the first prompt size carries the tg run.
  for pp in $pps; do
    n=0; [ "$pp" = "$first_pp" ] && n=$tg
    "$mb" run "$model" "$threads" "$pp" "$n" int8 > "$log/fp4z-int8-$pp-$r.json"
  done
  "$lb" -m "$gg/q4_0.gguf" -t "$threads" -p "$pp_csv" -n "$tg" -r 1 -o json > "$log/llama-q4_0-$r.json"
  # fp4z --exact (f32 activations): generation only (its prompt speed is not a goal).
  "$mb" run "$model" "$threads" 1 "$tg" > "$log/fp4z-f32-1-$r.json"
  # llama.cpp's NVFP4 type: generation only (its prompt path is 4x slower than its Q4_0 and not a goal).
  "$lb" -m "$gg/nvfp4.gguf" -t "$threads" -p 0 -n "$tg" -r 1 -o json > "$log/llama-nvfp4-$r.json"
  if [ -n "${BASE_MODEL_BENCH:-}" ]; then  # an older fp4z build, same runs as the default above
    for pp in $pps; do
      n=0; [ "$pp" = "$first_pp" ] && n=$tg
      "$BASE_MODEL_BENCH" run "$model" "$threads" "$pp" "$n" int8 > "$log/base-int8-$pp-$r.json"
    done
  fi
done

python3 - "$log" "$rounds" "$pps" "$tg" "$threads" "$(head -1 build-llamacpp/build-info.txt)" "$load_start" <<'PY'
import glob, json, os, statistics, sys
log, rounds, pps, tg, threads, commit, load_start = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
med = lambda xs: statistics.median(xs) if xs else float("nan")
rows = []
load = lambda pat: [json.load(open(f)) for f in glob.glob(f"{log}/{pat}")]
i8 = {pp: load(f"fp4z-int8-{pp}-*.json") for pp in pps}
f32 = load("fp4z-f32-1-*.json")
rows.append(("fp4z NVFP4 (BF16 head), int8 activations (default)", [med([j["pp_tok_per_s"] for j in i8[pp]]) for pp in pps],
             med([j["tg_tok_per_s"] for j in i8[pps[0]]])))
rows.append(("fp4z NVFP4 (BF16 head), `--exact` f32", [None] * len(pps), med([j["tg_tok_per_s"] for j in f32])))
base = {pp: load(f"base-int8-{pp}-*.json") for pp in pps}
if base[pps[0]]:
    rows.append(("fp4z before this change (BASE_MODEL_BENCH), int8", [med([j["pp_tok_per_s"] for j in base[pp]]) for pp in pps],
                 med([j["tg_tok_per_s"] for j in base[pps[0]]])))
for t, label in (("q4_0", "llama.cpp Q4_0 (BF16 head: same bytes)"), ("nvfp4", "llama.cpp NVFP4 (same weights, BF16 head)")):
    runs = [json.load(open(f)) for f in glob.glob(f"{log}/llama-{t}-*.json")]
    pp_rates = [med([e["avg_ts"] for r in runs for e in r if e["n_prompt"] == int(pp) and e["n_gen"] == 0]) for pp in pps]
    pp_rates = [None if x != x else x for x in pp_rates]  # not measured (NaN)
    tg_rate = med([e["avg_ts"] for r in runs for e in r if e["n_gen"] == int(tg) and e["n_prompt"] == 0])
    rows.append((label, pp_rates, tg_rate))
print(f"\n{commit}; {threads} threads, median of {rounds} alternating rounds, tg = {tg} tokens; load average at start {load_start}, at end {' '.join(open('/proc/loadavg').read().split()[:3])}")
rss = [j["peak_rss_mb"] for pp in pps for j in i8[pp]]
print(f"fp4z peak resident memory (int8 path): {max(rss):.0f} MB")
cpu = lambda js, k, n: med([j[k] / j[n] for j in js if j[n]])
print(f"fp4z process CPU seconds per token (median): pp{pps[0]} {cpu(i8[pps[0]], 'pp_cpu_s', 'pp_tokens'):.3f}, pp{pps[-1]} {cpu(i8[pps[-1]], 'pp_cpu_s', 'pp_tokens'):.3f}, generation {cpu(i8[pps[0]], 'tg_cpu_s', 'tg_tokens'):.3f}")
if base[pps[0]]:
    print(f"before (BASE_MODEL_BENCH): pp{pps[0]} {cpu(base[pps[0]], 'pp_cpu_s', 'pp_tokens'):.3f}, pp{pps[-1]} {cpu(base[pps[-1]], 'pp_cpu_s', 'pp_tokens'):.3f}, generation {cpu(base[pps[0]], 'tg_cpu_s', 'tg_tokens'):.3f}")
print()
print("| engine, linears (head) | " + " | ".join(f"pp{pp} tok/s" for pp in pps) + " | generation tok/s |")
print("|---|" + "---|" * (len(pps) + 1))
for label, pp_rates, tg_rate in rows:
    print(f"| {label} | " + " | ".join("–" if x is None else f"{x:.2f}" for x in pp_rates) + f" | {tg_rate:.2f} |")
PY
if [ -n "${KEEP_LOG:-}" ]; then mkdir -p "$KEEP_LOG" && cp "$log"/*.json "$KEEP_LOG"/; fi
rm -rf "$log"
