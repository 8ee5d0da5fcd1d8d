#!/usr/bin/env bash
# Regenerates the golden .fp4z v1.0 container and its decode-error variants (tests/golden/). Run it only
# when the format version changes: tests/golden_container_test.cpp decodes these committed bytes, so an
# accidental format change fails there. usage: tests/golden/make_fp4z_v1.sh BUILD/fp4z
set -euo pipefail
F=$(realpath "${1:?fp4z binary}")
cd "$(dirname "$0")"
rm -rf fp4z-v1.0 && mkdir -p fp4z-v1.0/tiny
# A tiny NVFP4-shaped checkpoint: FP4 codes (U8, skewed), FP8 scales, BF16 and F32 tensors, a text file.
/usr/bin/python3 - fp4z-v1.0/tiny <<'PY'
import json, struct, sys
import numpy as np
out = sys.argv[1]
rng = np.random.default_rng(1234)
codes = rng.choice(16, size=(64, 256), p=np.array([8,6,5,4,3,2,1,1,2,6,5,4,3,2,1,1]) / 54).astype(np.uint8)
packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
scales = rng.integers(0x28, 0x40, size=(64, 64), dtype=np.uint8)
bf16 = (rng.normal(0, 0.02, size=(64, 64)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
f32 = rng.normal(0, 1, size=(32, 64)).astype(np.float32)
g = np.array([448.0], dtype=np.float32)
tensors = [("model.layers.0.mlp.up_proj.weight_packed", "U8", packed), ("model.layers.0.mlp.up_proj.weight_scale", "F8_E4M3", scales),
           ("model.layers.0.mlp.up_proj.weight_global_scale", "F32", g), ("model.embed_tokens.weight", "BF16", bf16),
           ("model.layers.0.self_attn.o_proj.weight", "F32", f32)]
header, pos = {"__metadata__": {"format": "pt"}}, 0
for name, dt, a in tensors:
    header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [pos, pos + a.nbytes]}
    pos += a.nbytes
h = json.dumps(header, separators=(",", ":")).encode()
h += b" " * (-len(h) % 8)
with open(out + "/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    for _, _, a in tensors:
        f.write(np.ascontiguousarray(a).tobytes())
with open(out + "/config.json", "w") as f:
    f.write('{\n  "architectures": ["Qwen3ForCausalLM"],\n  "note": "golden container input"\n}\n')
PY
"$F" compress fp4z-v1.0/tiny -o fp4z-v1.0/tiny.fp4z -q --threads 1 --zstd-level 3 --chunk-size 64KiB
# Decode-error variants: one fault each; expected.tsv holds file, then the error text the reader must print.
G=fp4z-v1.0/tiny.fp4z
size=$(stat -c %s "$G")
E=fp4z-v1.0/errors
mkdir -p "$E"
mutate() {  # name offset hexbyte
  cp "$G" "$E/$1.fp4z"
  printf "\\x$3" | dd of="$E/$1.fp4z" bs=1 seek="$2" conv=notrunc status=none
}
mutate bad-magic 0 00
mutate version-2 8 02
mutate flags-set 12 01
mutate payload-bit 40 5a
mutate index-bit $((size - 60)) 5a
mutate end-magic $((size - 1)) 00
head -c $((size - 7)) "$G" > "$E/truncated.fp4z"
head -c 50 "$G" > "$E/too-small.fp4z"
: > "$E/expected.tsv"
for f in "$E"/*.fp4z; do
  set +e
  msg=$("$F" decompress --test "$f" 2>&1 >/dev/null)
  rc=$?
  set -e
  [ $rc -eq 2 ] || { echo "expected exit 2 for $f, got $rc: $msg" >&2; exit 1; }
  printf '%s\t%s\n' "$(basename "$f")" "${msg#*"$(basename "$f")": }" >> "$E/expected.tsv"
done
cat "$E/expected.tsv"
