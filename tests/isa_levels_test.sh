#!/usr/bin/env bash
# FP4Z_ISA forcing each level (scalar, avx2, avx512, avx512vnni, avx512bf16) gives byte-identical outputs of
# quantize (absmax, seed, rd without calibration), compress, stats, compare, export-gguf (nvfp4 and q4_0)
# and greedy generate (prompt via the int8 path, exact by design) on stories260K. Levels this CPU lacks
# are reported as skipped (exit 77 when only scalar can run). Not covered: rd with --calibration, whose
# activations come from the f32 forward pass (its sums are ordered per ISA, docs/inference.md).
# usage: isa_levels_test.sh FP4Z_BINARY FIXTURES_DIR
set -euo pipefail
F=$(realpath "${1:?fp4z binary}")
FX=${FP4Z_FIXTURES:-${2:?fixtures dir}}
W=$(mktemp -d /tmp/fp4z-isa-levels-XXXXXX)
trap 'rm -rf "$W"' EXIT
flags=$(grep -m1 '^flags' /proc/cpuinfo)
has() { [[ " $flags " == *" $1 "* ]]; }
levels=(scalar)
if has avx2 && has fma && has f16c && has bmi2; then levels+=(avx2); fi
if [ ${#levels[@]} -eq 2 ] && has avx512f && has avx512bw && has avx512vl && has avx512dq; then
  levels+=(avx512)
  if has avx512_vnni; then levels+=(avx512vnni); else echo "skip avx512vnni: CPU lacks it"; fi
  if has avx512_vnni && has avx512_bf16; then levels+=(avx512bf16); else echo "skip avx512bf16: CPU lacks it"; fi
fi
if [ ${#levels[@]} -eq 1 ]; then echo "only the scalar level runs here"; exit 77; fi
"$F" import-llama2c "$FX/stories260K/stories260K.bin" --tokenizer "$FX/stories260K/tok512.bin" --out "$W/src" >/dev/null
tree_hash() { (cd "$1" && find . -type f | sort | xargs sha256sum) | sha256sum | cut -c1-64; }
for L in "${levels[@]}"; do
  o="$W/$L"; mkdir -p "$o"
  export FP4Z_ISA=$L
  # Relative paths inside the level's directory, so that reports that name their inputs agree.
  (cd "$o" && "$F" quantize --quiet --source ../src --out absmax --threads 2 &&
    "$F" quantize --quiet --source ../src --template absmax --method seed --alpha 2 --out seed --threads 2 2>/dev/null &&
    "$F" quantize --quiet --source ../src --method rd --target-bits 3.5 --out rd --threads 2 &&
    "$F" export-gguf absmax -o absmax.gguf >/dev/null && "$F" export-gguf absmax --type q4_0 -o q4_0.gguf >/dev/null &&
    "$F" compress -q --zstd-level 3 seed -o seed.fp4z && "$F" decompress seed.fp4z -o restored >/dev/null)
  {
    echo "absmax $(tree_hash "$o/absmax")"
    echo "seed $(tree_hash "$o/seed")"
    echo "rd $(cat "$o"/rd/*.safetensors "$o/rd/config.json" | sha256sum | cut -c1-64)"  # its report holds timings
    echo "gguf $(sha256sum "$o/absmax.gguf" "$o/q4_0.gguf" | cut -c1-64 | tr '\n' ' ')"
    echo "container $(sha256sum < "$o/seed.fp4z" | cut -c1-64)"
    echo "restored $(tree_hash "$o/restored")"
    "$F" stats --json --no-zstd --reference "$W/src" "$o/seed" | sed "s|$o|OUT|g"
    "$F" compare --json --reference "$W/src" "$o/absmax" | sed "s|$o|OUT|g"
    "$F" generate -q --int8-act --model "$o/seed" --prompt "Once upon a time" -n 24 --threads 2
  } > "$W/out-$L.txt"
  unset FP4Z_ISA
done
fail=0
for L in "${levels[@]:1}"; do
  if cmp -s "$W/out-scalar.txt" "$W/out-$L.txt"; then echo "$L: identical to scalar"
  else echo "FAIL: $L differs from scalar:"; diff "$W/out-scalar.txt" "$W/out-$L.txt" | head -20 || true; fail=1; fi
done
grep -q "^seed [0-9a-f]\{64\}$" "$W/out-scalar.txt" || { echo "FAIL: no output recorded"; fail=1; }
exit $fail
