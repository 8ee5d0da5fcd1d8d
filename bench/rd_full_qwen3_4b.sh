#!/bin/sh
# Full-size calibrated rd on a Qwen3-4B-shaped BF16 checkpoint, measured on its first LAYERS decoder layers: CPU time, wall, peak RSS, time split.
# usage: bench/rd_full_qwen3_4b.sh WORK_DIR [LAYERS] [SEQS]
#   SRC (environment): the BF16 checkpoint with tokenizer (default /work/bench-data/q4b-bf16); WORK_DIR/src
#   is generated with bench/gen_full_qwen3_4b.sh when SRC is unset and missing. LAYERS (default 2): keep the
#   first LAYERS decoder layers (bench/truncate_layers.py) and extrapolate per layer. SEQS (default 4) is what the
#   full model gets by default (rd_auto_calibration_seqs: 4 × 512 tokens for Qwen3-4B), passed explicitly
#   because the automatic size of a truncated model would be larger. TEXT (environment): calibration text
#   (default: the fixtures' TinyStories validation file). The defaults of the calibrated path (--rd-inputs
#   source, --rd-stages group, --rd-refine 4, --damp 0.03) apply; per-layer sensitivity weighting is off
#   (--rd-weighting uniform): it costs one whole-model forward per Linear, which a layer subset cannot
#   represent (its cost grows with layers²; docs/rd-sweep.md extrapolates it from the forward time).
#   --lambda 1e-7 (a model whose H do not fit the search cache, as here: one source statistics pass for the
#   proxies' column weights, the λ = 0 and kRdRatePasses − 1 table runs as row-subsample proxies, one
#   sequential calibrated run, the written one; docs/quantize.md "Search at full size"). THREADS (default 2).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$1
layers=${2:-2}
seqs=${3:-4}
text=${TEXT:-$here/../../shared/fixtures/eval/tinystories/tinystories_val.txt}
fp4z=${FP4Z:-$here/../build/fp4z}
mkdir -p "$work"
src=${SRC:-/work/bench-data/q4b-bf16}
[ -d "$src" ] || { src=$work/src; [ -d "$src" ] || sh "$here/gen_full_qwen3_4b.sh" "$src"; }
[ -d "$work/src-l$layers" ] || python3 "$here/truncate_layers.py" "$src" "$work/src-l$layers" "$layers"
/usr/bin/time -v "$fp4z" quantize --source "$work/src-l$layers" --out "$work/rd-cal-l$layers" --method rd --lambda "${LAMBDA:-1e-7}" \
  --calibration "$text" --calibration-seqs "$seqs" --rd-weighting uniform --threads "${THREADS:-2}" --force \
  2> "$work/rd-cal-l$layers.time.log" || { tail -n 30 "$work/rd-cal-l$layers.time.log" >&2; exit 1; }
echo "== rd calibrated, $layers layers, $seqs x 512 tokens"
grep -E 'Elapsed|User time|System time|Maximum resident|Percent of CPU' "$work/rd-cal-l$layers.time.log"
python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print('bits/weight', j['bits_per_weight'], 'search runs', j['search_runs'], 'calibration', j['calibration_sequences'], 'x', j['calibration_ctx']); print('seconds', j['seconds'])" \
  "$work/rd-cal-l$layers/fp4z_rd_report.json"
