#!/usr/bin/env bash
# Makes the golden .fp4z v1.1 container (tests/golden/fp4z-v1.1): a checkpoint whose FP4 code tensor is
# one 64 KiB rANS stream, so the file holds a format-1.1 stream (mode 3, 64 lanes). Only the container and
# the SHA-256 of its input files are committed; tests/golden_container_test.cpp decodes the committed
# bytes and compares. Run it once per format version, never to "fix" a failing test.
# usage: tests/golden/make_fp4z_v1_1.sh BUILD/fp4z
set -euo pipefail
F=$(realpath "${1:?fp4z binary}")
cd "$(dirname "$0")"
rm -rf fp4z-v1.1 && mkdir -p fp4z-v1.1
W=$(mktemp -d /tmp/fp4z-golden-XXXXXX)
trap 'rm -rf "$W"' EXIT
# A compressed-tensors NVFP4 module: skewed FP4 codes [256, 512] (64 KiB packed), FP8 scales, a global scale.
/usr/bin/python3 - "$W/in" ../py <<'PY'
import os, sys
import numpy as np
out = sys.argv[1]
sys.path.insert(0, sys.argv[2])
import safetensors_io
os.makedirs(out)
rng = np.random.default_rng(11)
p = np.array([400, 20, 10, 5, 2, 1, 1, 1, 1, 20, 10, 5, 2, 1, 1, 1], dtype=np.float64)  # ~1 bit a code: a small file
codes = rng.choice(16, size=(256, 512), p=p / p.sum()).astype(np.uint8)
packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
scales = rng.integers(0x30, 0x3C, size=(256, 32), dtype=np.uint8)
m = "model.layers.0.mlp.down_proj"
safetensors_io.write_file(out + "/model.safetensors", [(m + ".weight_packed", "U8", packed), (m + ".weight_scale", "F8_E4M3", scales),
                                                       (m + ".weight_global_scale", "F32", np.array([448.0 * 6.0], dtype=np.float32))])
with open(out + "/config.json", "w") as f:
    f.write('{\n  "architectures": ["Qwen3ForCausalLM"],\n  "note": "golden container input, format 1.1"\n}\n')
PY
"$F" compress "$W/in" -o fp4z-v1.1/wide.fp4z -q --threads 1 --zstd-level 3
(cd "$W/in" && sha256sum config.json model.safetensors) > fp4z-v1.1/wide.sha256
cat fp4z-v1.1/wide.sha256
ls -l fp4z-v1.1
