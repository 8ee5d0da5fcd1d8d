#!/bin/sh
# Times `fp4z quantize` absmax and seed (alpha 2, template = the absmax output) on a full-size checkpoint.
# usage: bench/quantize_full.sh FP4Z_BINARY SRC_DIR WORK_DIR [extra fp4z args, e.g. --threads 2]
# Prints wall time, user time and peak RSS of each run (from /usr/bin/time -v), plus the peak of RssAnon
# (heap) and RssFile (mmapped checkpoint pages, reclaimable) sampled from /proc every 0.2 s.
# WORK_DIR/absmax and WORK_DIR/seed are replaced (--force). Needs ~2x 2.7 GB of free disk.
set -eu
if [ $# -lt 3 ]; then
  echo "usage: $0 FP4Z_BINARY SRC_DIR WORK_DIR [fp4z args...]" >&2
  exit 2
fi
fp4z=$1
src=$2
work=$3
shift 3
mkdir -p "$work"

measure() {  # name, then the command
  name=$1
  shift
  log="$work/$name.time.log"
  /usr/bin/time -v "$@" > "$work/$name.out.log" 2> "$log" &
  timepid=$!
  anon=0
  file=0
  while kill -0 "$timepid" 2>/dev/null; do
    child=$(cat "/proc/$timepid/task/$timepid/children" 2>/dev/null | awk '{print $1}')
    if [ -n "$child" ] && [ -r "/proc/$child/status" ]; then
      a=$(awk '/^RssAnon:/ {print $2}' "/proc/$child/status" 2>/dev/null || echo 0)
      f=$(awk '/^RssFile:/ {print $2}' "/proc/$child/status" 2>/dev/null || echo 0)
      [ -n "$a" ] && [ "$a" -gt "$anon" ] && anon=$a
      [ -n "$f" ] && [ "$f" -gt "$file" ] && file=$f
    fi
    sleep 0.2
  done
  if ! wait "$timepid"; then
    echo "$name: FAILED (see $log)" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$log")
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$log")
  user=$(sed -n 's/.*User time (seconds): //p' "$log")
  printf '%-8s wall %s  user %ss  peak RSS %s MiB (sampled peaks: RssAnon %s MiB, RssFile %s MiB)\n' \
    "$name" "$wall" "$user" "$((rss / 1024))" "$((anon / 1024))" "$((file / 1024))"
}

measure absmax "$fp4z" quantize --source "$src" --out "$work/absmax" --method absmax --force --quiet "$@"
measure seed "$fp4z" quantize --source "$src" --template "$work/absmax" --out "$work/seed" --method seed \
  --alpha 2.0 --force --quiet "$@"
du -sh "$work/absmax" "$work/seed"
