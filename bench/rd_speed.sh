#!/usr/bin/env bash
# Whole-process speed of `fp4z quantize --method rd` without calibration, one thread, in MB of BF16 input
# per CPU second (user + sys): --lambda L and --target-bits B on one 2560 × 9728 BF16 Linear and on a
# Qwen3-4B-shaped BF16 checkpoint. usage: bench/rd_speed.sh [WORK_DIR] [QWEN3_4B_BF16_DIR]
# WORK_DIR (default build/rd-speed) gets the one-layer checkpoint (made here, 50 MB) and the outputs
# (deleted after each run). The 4B checkpoint (8 GB) is made by bench/gen_full_qwen3_4b.sh; without it
# only the one-layer figures are printed. RD_SPEED_RUNS (3) runs per figure, median CPU time;
# RD_SPEED_THREADS (1) threads; FP4Z=path/to/fp4z times another build (e.g. main's, for a baseline).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-build/rd-speed}
Q4B=${2:-}
LAMBDA=${RD_SPEED_LAMBDA:-5e-6}
BITS=${RD_SPEED_BITS:-3.7}
mkdir -p "$WORK"
LAYER=$WORK/one-layer
if [ ! -f "$LAYER/model.safetensors" ]; then
  mkdir -p "$LAYER"
  cp ../shared/fixtures/qwen3-configs/Qwen3-4B.config.json "$LAYER/config.json" 2>/dev/null ||
    cp "${FP4Z_FIXTURES:-../shared/fixtures}/qwen3-configs/Qwen3-4B.config.json" "$LAYER/config.json"
  .venv/bin/python - "$LAYER/model.safetensors" <<'PY'
import sys
import numpy as np
import torch
from safetensors.torch import save_file
rng = np.random.default_rng(0)
w = (0.02 * rng.standard_t(5, size=(2560, 9728))).astype(np.float32)
save_file({"model.layers.0.mlp.down_proj.weight": torch.from_numpy(w).to(torch.bfloat16)}, sys.argv[1])
PY
fi

# bytes of BF16 Linear weights the job quantizes (what the rate is per)
linear_bytes() {
  .venv/bin/python - "$1" <<'PY'
import json, os, struct, sys, glob
total = 0
for f in glob.glob(os.path.join(sys.argv[1], "*.safetensors")):
    with open(f, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        h = json.loads(fh.read(n))
    for k, v in h.items():
        if k.endswith("proj.weight") and len(v["shape"]) == 2:
            total += v["data_offsets"][1] - v["data_offsets"][0]
print(total)
PY
}

# Each configuration runs RD_SPEED_RUNS times (default 3) with --threads RD_SPEED_THREADS (default 1);
# the median CPU time is reported (the machine may be shared), with the fastest and slowest.
RUNS=${RD_SPEED_RUNS:-3}
THREADS=${RD_SPEED_THREADS:-1}
run() {  # NAME SOURCE ARGS...
  local name=$1 src=$2
  shift 2
  local out=$WORK/out-$name bytes cpus=() walls=() user sys wall rss
  bytes=$(linear_bytes "$src")
  for _ in $(seq "$RUNS"); do
    rm -rf "$out"
    # user, sys (µs resolution, os.wait4), wall seconds and peak RSS (KiB) of the child
    python3 -c "
import os, sys, time
t0 = time.monotonic()
pid = os.spawnvp(os.P_NOWAIT, sys.argv[2], sys.argv[2:])
_, status, ru = os.wait4(pid, 0)
open(sys.argv[1], 'w').write(f'{ru.ru_utime:.4f} {ru.ru_stime:.4f} {time.monotonic() - t0:.3f} {ru.ru_maxrss}\\n')
sys.exit(os.waitstatus_to_exitcode(status))" "$WORK/time-$name" "${FP4Z:-build/fp4z}" quantize --source "$src" --out "$out" --method rd "$@" --threads "$THREADS" -q
    read -r user sys wall rss < "$WORK/time-$name"
    cpus+=("$user+$sys")
    walls+=("$wall")
  done
  python3 -c "
import json, statistics
r = json.load(open('$out/fp4z_rd_report.json'))
cpu = sorted(eval(c) for c in '${cpus[*]}'.split())
wall = statistics.median(float(w) for w in '${walls[*]}'.split())
med = statistics.median(cpu)
print(f'$name (threads $THREADS, {len(cpu)} runs): {$bytes / 1e6:.1f} MB BF16 Linears, CPU median {med:.3f} s (min {cpu[0]:.3f}, max {cpu[-1]:.3f};'
      f' last user $user + sys $sys), wall median {wall:.2f} s, peak RSS {$rss / 1024:.0f} MB'
      f' -> {$bytes / 1e6 / med:.1f} MB/s per CPU second, {$bytes / 1e6 / wall:.1f} MB/s wall;'
      f' bits/weight {r[\"bits_per_weight\"]:.4f}, weight MSE {r[\"weight_mse\"]:.4g},'
      f' search runs {r[\"search_runs\"]}, lambda {r[\"lambda\"]:.4g}')"
  rm -rf "$out"
}

echo "load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
run layer-lambda "$LAYER" --lambda "$LAMBDA"
run layer-target "$LAYER" --target-bits "$BITS"
if [ -n "$Q4B" ]; then
  run q4b-lambda "$Q4B" --lambda "$LAMBDA"
  run q4b-target "$Q4B" --target-bits "$BITS"
fi
