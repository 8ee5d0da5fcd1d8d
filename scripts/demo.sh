#!/usr/bin/env bash
# README command 1: installs, builds, and runs the whole pipeline on the real stories260K model.
set -euo pipefail
cd "$(dirname "$0")/.."
FIX=${FP4Z_FIXTURES:-../shared/fixtures}
bash scripts/install-deps.sh
bash scripts/build.sh --target fp4z
F=build/fp4z
D=build/demo
mkdir -p "$D"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "import the llama2.c stories260K checkpoint as a Hugging Face Llama checkpoint (F32, exact values)"
$F import-llama2c "$FIX/stories260K/stories260K.bin" --tokenizer "$FIX/stories260K/tok512.bin" --out "$D/stories260K" --force

step "quantize: absmax (compressed-tensors math, loader-safe fused global scales)"
$F quantize --source "$D/stories260K" --out "$D/absmax" --force --quiet

step "quantize: seed scale inflation, alpha 2, absmax output as the template (bit-exact reference method)"
$F quantize --source "$D/stories260K" --template "$D/absmax" --method seed --alpha 2 --out "$D/seed" --force --quiet

step "quantize: seed with --fused-global-scale (loader-safe)"
$F quantize --source "$D/stories260K" --template "$D/absmax" --method seed --alpha 2 --fused-global-scale --out "$D/seed-fused" --force --quiet

step "fp4z check (exit 0 = clean, 1 = problems a loader would hit)"
for c in absmax seed seed-fused; do
  set +e; $F check "$D/$c" > "$D/check-$c.txt"; rc=$?; set -e
  printf '%-11s exit %d  %s\n' "$c" "$rc" "$(tail -n 1 "$D/check-$c.txt")"
done
grep -m 1 -A 4 'fused_global_scale' "$D/check-seed.txt" || true

step "per-layer comparison against the F32 source (w2/down_proj has K = 172, not a multiple of 16: kept)"
$F compare --reference "$D/stories260K" "$D/absmax" "$D/seed" "$D/seed-fused"

step "generate: greedy from BOS with the F32 import and the loader-safe NVFP4 variant"
$F generate --model "$D/stories260K" --prompt "" -n 48
$F generate --model "$D/seed-fused" --prompt "" -n 48

step "perplexity on TinyStories and KL divergence against the F32 model (20 windows of 512 tokens)"
TXT="$FIX/eval/tinystories/tinystories_val.txt"
for c in absmax seed-fused; do
  echo "-- $c"
  $F eval ppl --model "$D/$c" --base "$D/stories260K" --text "$TXT" --chunks 20 2>&1 | grep -E "^(PPL|base|KL|same)"
done

step "lossless compression of the seed checkpoint, byte-exact restore, and real coded sizes"
$F compress "$D/seed-fused" -o "$D/seed-fused.fp4z" --force
rm -rf "$D/restored" && $F decompress "$D/seed-fused.fp4z" -o "$D/restored"
(cd "$D/seed-fused" && sha256sum $(find . -type f | sort)) > "$D/sha-a.txt"
(cd "$D/restored" && sha256sum $(find . -type f | sort)) > "$D/sha-b.txt"
if cmp -s "$D/sha-a.txt" "$D/sha-b.txt"; then
  echo "restored: every file byte-identical (SHA-256)"
else
  echo "FAILED: the restored checkpoint differs from the original:" >&2
  diff "$D/sha-a.txt" "$D/sha-b.txt" >&2 || true
  exit 1
fi
$F stats "$D/seed-fused" --reference "$D/stories260K" | tail -n 9
