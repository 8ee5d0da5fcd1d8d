# Writes a one-Linear BF16 checkpoint (a Qwen3-4B down_proj, 2560 x 9728) with the real config and tokenizer.
"""usage: gen_one_layer.py OUT_DIR [--seed S]

The whole-process seed benchmark (bench/quantize_io.sh) quantizes this directory: one 49.8 MB
BF16 tensor, plus config.json, generation_config.json and the Qwen3 tokenizer (11 MB), which a
real run also copies.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "py"))
import safetensors_io as st  # noqa: E402

FIXTURES = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "fixtures"))
ROWS, COLS = 2560, 9728


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(FIXTURES, "qwen3-configs", "Qwen3-4B.config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 151643, "eos_token_id": [151645, 151643]}, f, indent=2)
    for fn in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(FIXTURES, "qwen3-tokenizer", fn), os.path.join(args.out, fn))
    rng = np.random.default_rng(args.seed)
    w = (rng.standard_normal((ROWS, COLS), dtype=np.float32) * 0.02).astype(np.float32)
    # BF16 by round-to-nearest-even of the f32 bit pattern.
    bits = w.view(np.uint32)
    bf16 = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    st.write_file(os.path.join(args.out, "model.safetensors"), [("model.layers.0.mlp.down_proj.weight", "BF16", bf16)])


if __name__ == "__main__":
    main()
