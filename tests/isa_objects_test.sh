#!/usr/bin/env bash
# Disassembles every compiled library object and checks the ISA file rule (CMakeLists.txt): code that runs
# on plain AVX-512 F/BW/VL/DQ or on AVX2 holds no instruction of a feature it is not gated on.
# usage: isa_objects_test.sh BUILD_DIR
set -euo pipefail
B=${1:?build dir}
VNNI='vpdpbusds?|vpdpwssds?'
BF16='vdpbf16ps|vcvtne2ps2bf16|vcvtneps2bf16'
# AVX-512 extensions no file is compiled for: VBMI, VBMI2, IFMA, BITALG, VPOPCNTDQ, GFNI, FP16, VP2INTERSECT.
OTHER='vpermb|vpermi2b|vpermt2b|vpmultishiftqb|vpcompress[bw]|vpexpand[bw]|vpshl?dv?[wdq]|vpshrdv?[wdq]|vpmadd52[lh]uq|vpopcnt[bwdq]|vpshufbitqmb|vgf2p8[a-z]*|vp2intersect[dq]|v(add|sub|mul|div|min|max|sqrt|fmadd[0-9]*|fmsub[0-9]*)[ps]h|vcvtph2psx|vcvtps2phx'
fail=0
n_checked=0
mnemonics() { objdump -d --no-show-raw-insn "$1" | awk -F'\t' 'NF >= 2 {print $2}'; }
forbid() {  # object, label, regex
  local hits
  hits=$(mnemonics "$1" | grep -E "^($3)\b" | sort | uniq -c | head -5 || true)
  if [ -n "$hits" ]; then
    echo "FAIL: $(basename "$1") holds $2 instructions:"; echo "$hits"; fail=1
  fi
}
require() {  # object, regex: proves the patterns match objdump's spelling
  if [ "$(mnemonics "$1" | grep -cE "^($2)\b" || true)" = 0 ]; then echo "FAIL: $(basename "$1") holds no ($2): checker patterns are stale"; fail=1; fi
}
evex_or_zmm() {  # AVX2 and portable objects: no zmm/opmask register, no EVEX prefix (0x62) on a v* instruction
  local hits
  hits=$(objdump -d "$1" | awk -F'\t' 'NF >= 3 && ($3 ~ /%zmm|%k[0-7]|\{1to/ || ($2 ~ /^62 / && $3 ~ /^v/)) {print $3}' | head -5 || true)
  if [ -n "$hits" ]; then echo "FAIL: $(basename "$1") holds AVX-512 (EVEX/zmm) code:"; echo "$hits"; fail=1; fi
}
seen_vnni=0 seen_bf16=0 seen_512=0 seen_avx2=0
while IFS= read -r o; do
  n_checked=$((n_checked + 1))
  case "$o" in
    *_avx512vnni.cpp.o) forbid "$o" BF16 "$BF16"; forbid "$o" "other AVX-512 extension" "$OTHER"; require "$o" "$VNNI"; seen_vnni=1 ;;
    *_avx512bf16.cpp.o) forbid "$o" VNNI "$VNNI"; forbid "$o" "other AVX-512 extension" "$OTHER"; require "$o" "$BF16"; seen_bf16=1 ;;
    *_avx512.cpp.o) forbid "$o" VNNI "$VNNI"; forbid "$o" BF16 "$BF16"; forbid "$o" "other AVX-512 extension" "$OTHER"
      require "$o" "v[a-z0-9]+"; seen_512=1 ;;
    *_avx2.cpp.o) forbid "$o" "VNNI/BF16/AVX-512 extension" "$VNNI|$BF16|$OTHER"; evex_or_zmm "$o"; seen_avx2=1 ;;
    *) forbid "$o" "VNNI/BF16/AVX-512 extension" "$VNNI|$BF16|$OTHER"; evex_or_zmm "$o"
      if [ "$(objdump -d --no-show-raw-insn "$o" | grep -c '%ymm' || true)" != 0 ]; then echo "FAIL: portable $(basename "$o") uses ymm registers"; fail=1; fi ;;
  esac
done < <(find "$B/CMakeFiles" -path '*/fp4z_*.dir/src/*' -name '*.cpp.o' | sort)
if [ $((seen_vnni + seen_bf16 + seen_512 + seen_avx2)) -ne 4 ]; then
  echo "FAIL: expected objects of every ISA suffix (vnni $seen_vnni, bf16 $seen_bf16, avx512 $seen_512, avx2 $seen_avx2)"; fail=1
fi
echo "checked $n_checked objects"
exit $fail
