#!/bin/sh
# Old vs new engine on the Qwen3-4B-shaped checkpoint, alternating binaries per round so that load
# changes hit both: generation (old exact f32 vs new default int8) and prompts pp128/pp512 (old
# --int8-act vs new default). Prints model_bench's JSON lines (wall tok/s and process CPU seconds).
# usage: bench/engine_compare.sh OLD_MODEL_BENCH NEW_MODEL_BENCH CHECKPOINT_DIR [rounds] [threads]
#   build the old binary from the commit before the change, e.g.
#   git archive 07dc612 | tar -x -C /tmp/old && cmake -S /tmp/old -B /tmp/old/build -G Ninja -DCMAKE_BUILD_TYPE=Release && cmake --build /tmp/old/build --target model_bench
set -eu
if [ $# -lt 3 ]; then
  echo "usage: $0 OLD_MODEL_BENCH NEW_MODEL_BENCH CHECKPOINT_DIR [rounds] [threads]" >&2
  exit 2
fi
old=$1 new=$2 dir=$3 rounds=${4:-3} threads=${5:-2}
i=1
while [ "$i" -le "$rounds" ]; do
  echo "# round $i"
  printf 'old exact  tg: '; "$old" run "$dir" "$threads" 1 32
  printf 'new int8   tg: '; "$new" run "$dir" "$threads" 1 32 int8
  for pp in 128 512; do
    printf 'old int8 pp%s: ' "$pp"; "$old" run "$dir" "$threads" "$pp" 0 int8
    printf 'new int8 pp%s: ' "$pp"; "$new" run "$dir" "$threads" "$pp" 0 int8
  done
  i=$((i + 1))
done
