#!/usr/bin/env bash
# Quality of rd's full-size search path on stories260K: issue 11's protocol at --target-bits 3.67, default path (λ search on the cache) vs the full-size one forced by FP4Z_RD_CACHE_BYTES=0.
# usage: bench/rd_proxy_stories260K.sh [WORK_DIR]   (default /tmp/rd-proxy-stories; FP4Z: the binary, default build/fp4z)
#   Calibration = first half (by bytes) of tinystories_val.txt, evaluation = the second half, 40 windows of 512
#   tokens, KL against the F32 model (as scripts/rd_sweep_stories260K.sh). Prints bits/weight, KL and the CPU
#   time (user + sys) of each quantize. FP4Z_RD_CACHE_BYTES=0 makes the search cache "not fit", so the job runs
#   what a Qwen3-4B-sized model runs: column weights from one source statistics pass, proxy search runs on
#   the whole rows (stories260K is below the subsample threshold), one sequential calibrated run (the written one).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
FIX=${FP4Z_FIXTURES:-$here/../../shared/fixtures}
W=${1:-/tmp/rd-proxy-stories}
fp4z=${FP4Z:-$here/../build/fp4z}
mkdir -p "$W"
[ -d "$W/stories260K" ] || "$fp4z" import-llama2c "$FIX/stories260K/stories260K.bin" --tokenizer "$FIX/stories260K/tok512.bin" --out "$W/stories260K" --force -q
TXT=$FIX/eval/tinystories/tinystories_val.txt
N=$(wc -c < "$TXT")
[ -f "$W/calib.txt" ] || head -c $((N / 2)) "$TXT" > "$W/calib.txt"
[ -f "$W/eval.txt" ] || tail -c +$((N / 2 + 1)) "$TXT" > "$W/eval.txt"
run() {  # NAME CACHE_BYTES(or empty)
  local name=$1 cache=$2
  if [ -n "$cache" ]; then export FP4Z_RD_CACHE_BYTES=$cache; else unset FP4Z_RD_CACHE_BYTES; fi
  /usr/bin/time -f '%U %S' -o "$W/$name.time" "$fp4z" quantize --source "$W/stories260K" --out "$W/$name" --method rd --target-bits 3.67 \
    --calibration "$W/calib.txt" --threads 1 --force -q
  unset FP4Z_RD_CACHE_BYTES
  "$fp4z" eval ppl --model "$W/$name" --base "$W/stories260K" --text "$W/eval.txt" --ctx 512 --chunks 40 --threads 1 --json -q > "$W/$name.ppl.json"
  python3 - "$W/$name" "$name" <<'EOF'
import json, sys
d, name = sys.argv[1], sys.argv[2]
rep = json.load(open(d + "/fp4z_rd_report.json"))
ppl = json.load(open(d + ".ppl.json"))
u, s = open(d + ".time").read().split()
kl = ppl["kl_divergence"]
print(f"{name}: bits/weight {rep['bits_per_weight']:.4f}  lambda {rep['lambda']:.4g}  search runs {rep['search_runs']}  "
      f"KL {kl['mean']:.4f} ± {kl['mean_stderr']:.4f}  quantize CPU s {float(u) + float(s):.1f}")
EOF
}
run default ""
run fullsize 0
