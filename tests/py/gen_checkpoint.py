# Generates deterministic Qwen3-shaped Hugging Face checkpoints (scaled down or full size) for quantize tests.
"""usage: gen_checkpoint.py OUT [--model 4B|0.6B] [--scale 64] [--layers N] [--dtype bf16|f16|f32]
                            [--shards N] [--seed S] [--full] [--edge] [--hidden H] [--intermediate I]
                            [--head-dim D] [--vocab V]

Tensor names come from the real Qwen3 inventories in shared/fixtures/qwen3-configs; shapes are
derived from the (adjusted) config by role, so the 0.6B collision kv_dim == hidden is no problem.
Weights are written tensor by tensor, in row chunks, so --full never holds the model in memory.
"""
import argparse
import json
import math
import os
import re
import shutil
import sys
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io as st  # noqa: E402
import nvfp4_ref as ref  # noqa: E402

FIXTURES = os.path.normpath(os.path.join(HERE, "..", "..", "..", "shared", "fixtures"))
DTYPES = {"bf16": ("BF16", "bfloat16"), "f16": ("F16", "float16"), "f32": ("F32", "float32")}
CHUNK_ELEMS = 1 << 22


def round16_up(x):
    return max(16, int(math.ceil(x / 16.0)) * 16)


def shape_of(name, cfg):
    H, I, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd, nh, kv = cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    rules = [
        (r"model\.embed_tokens\.weight$", [V, H]),
        (r"lm_head\.weight$", [V, H]),
        (r"(input_layernorm|post_attention_layernorm)\.weight$", [H]),
        (r"model\.norm\.weight$", [H]),
        (r"(q_norm|k_norm)\.weight$", [hd]),
        (r"q_proj\.weight$", [nh * hd, H]),
        (r"(k_proj|v_proj)\.weight$", [kv * hd, H]),
        (r"o_proj\.weight$", [H, nh * hd]),
        (r"(gate_proj|up_proj)\.weight$", [I, H]),
        (r"down_proj\.weight$", [H, I]),
    ]
    for pat, shape in rules:
        if re.search(pat, name):
            return shape
    raise ValueError(f"unknown tensor role: {name}")


def layer_of(name):
    m = re.match(r"model\.layers\.(\d+)\.", name)
    return int(m.group(1)) if m else None


def tensor_seed(seed, name):
    return (seed * 1000003 + zlib.crc32(name.encode())) & 0xFFFFFFFF


def gen_chunks(name, shape, seed):
    """Yields f32 row chunks of a normal-looking tensor: random normal * heavy-tailed per-row scale."""
    rng = np.random.default_rng(tensor_seed(seed, name))
    if len(shape) == 1:
        yield (np.float32(1.0) + rng.standard_normal(shape[0]).astype(np.float32) * np.float32(0.05))
        return
    R, C = shape
    base = 0.02 if "embed" in name or "lm_head" in name else 1.0 / math.sqrt(C)
    rows_per_chunk = max(1, CHUNK_ELEMS // C)
    for r0 in range(0, R, rows_per_chunk):
        n = min(rows_per_chunk, R - r0)
        # heavy tails: log-normal row scales and rare 8x outliers
        row = (base * np.exp(rng.standard_normal((n, 1)) * 0.5)).astype(np.float32)
        w = rng.standard_normal((n, C), dtype=np.float32) * row
        out = rng.random((n, C), dtype=np.float32) < 0.001
        w[out] *= np.float32(8.0)
        yield w


def edge_tensor(name, shape, seed, st_dtype):
    """Edge-case content for a few layer-0 tensors (None = use the normal generator)."""
    rng = np.random.default_rng(tensor_seed(seed + 7, name))
    if len(shape) != 2 or layer_of(name) != 0:
        return None
    R, C = shape
    w = None
    if name.endswith("self_attn.q_proj.weight"):
        # an all-zero block, an all -0.0 block, sprinkled -0.0, exact E2M1 ties in the last row
        w = rng.standard_normal((R, C)).astype(np.float32) / np.float32(math.sqrt(C))
        w[0, 16:32] = 0.0
        w[1, 0:16] = -0.0
        w[2, ::7] = -0.0
        w[3, :16] = np.array([1.5, 0.0625, 0.1875, 0.3125, 0.4375, 0.625, 0.875, 1.25,
                              -0.0625, -0.1875, -0.3125, -0.4375, -0.625, -0.875, -1.25, -1.5], np.float32)
    elif name.endswith("self_attn.o_proj.weight"):
        w = np.zeros((R, C), np.float32)  # all-zero tensor, not part of a fused group
    elif name.endswith("mlp.gate_proj.weight"):
        # huge dynamic range, finite in the source dtype: |w| log-uniform in [1e-30, 1e30] (F16: [1e-7, 6e4])
        lo, hi = (-7, 4.7) if st_dtype == "F16" else (-30, 30)
        mag = 10.0 ** rng.uniform(lo, hi, (R, C))
        w = (mag * np.where(rng.random((R, C)) < 0.5, -1.0, 1.0)).astype(np.float32)
    elif name.endswith("mlp.down_proj.weight"):
        # rows spanning 7 decades: FP8 block scales become subnormal, some underflow to 0 (-> 0.125)
        row = (10.0 ** -rng.uniform(0, 7, (R, 1))).astype(np.float32)
        w = rng.standard_normal((R, C)).astype(np.float32) * row
        w[0] = rng.standard_normal(C).astype(np.float32)  # one full-size row sets amax
    elif name.endswith("self_attn.v_proj.weight"):
        # tiny values only (scales renormalised within the q/k/v group amax)
        w = rng.standard_normal((R, C)).astype(np.float32) * np.float32(1e-6)
    return w


def build_config(args):
    with open(os.path.join(FIXTURES, "qwen3-configs", f"Qwen3-{args.model}.config.json")) as f:
        cfg = json.load(f)
    nl = cfg["num_hidden_layers"]
    if not args.full:
        s = args.scale
        cfg["hidden_size"] = args.hidden or round16_up(cfg["hidden_size"] / s)
        cfg["intermediate_size"] = args.intermediate or round16_up(cfg["intermediate_size"] / s)
        cfg["head_dim"] = args.head_dim or round16_up(cfg["head_dim"] / s)
        cfg["vocab_size"] = args.vocab or round16_up(cfg["vocab_size"] / s)
        nl = min(args.layers, nl)
    cfg["num_hidden_layers"] = nl
    cfg["max_window_layers"] = nl
    cfg["torch_dtype"] = DTYPES[args.dtype][1]
    return cfg


def tensor_names(args, cfg):
    path = os.path.join(FIXTURES, "qwen3-configs", f"Qwen3-{args.model}.tensors.tsv")
    names = []
    with open(path) as f:
        next(f)
        for line in f:
            name, dtype, shape = line.rstrip("\n").split("\t")
            L = layer_of(name)
            if L is not None and L >= cfg["num_hidden_layers"]:
                continue
            if args.full:  # cross-check the role-derived shapes against the real inventory
                assert json.loads(shape) == shape_of(name, cfg), name
            names.append(name)
    return names


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--model", default="4B", choices=["4B", "0.6B"])
    ap.add_argument("--scale", type=float, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--dtype", default="bf16", choices=list(DTYPES))
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--edge", action="store_true")
    ap.add_argument("--hidden", type=int)
    ap.add_argument("--intermediate", type=int)
    ap.add_argument("--head-dim", type=int)
    ap.add_argument("--vocab", type=int)
    ap.add_argument("--no-tokenizer", action="store_true")
    args = ap.parse_args()

    cfg = build_config(args)
    names = tensor_names(args, cfg)
    st_dtype = DTYPES[args.dtype][0]
    esize = st.STORAGE[st_dtype][1]
    shapes = {n: shape_of(n, cfg) for n in names}

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 151643, "do_sample": True, "eos_token_id": [151645, 151643],
                   "pad_token_id": 151643, "temperature": 0.6, "top_k": 20, "top_p": 0.95,
                   "transformers_version": "4.51.0"}, f, indent=2)
    if not args.no_tokenizer:
        for fn in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(os.path.join(FIXTURES, "qwen3-tokenizer", fn), os.path.join(args.out, fn))

    # split into shards of roughly equal byte size, keeping inventory order
    sizes = [st.numel(shapes[n]) * esize for n in names]
    total = sum(sizes)
    nshards = max(1, min(args.shards, len(names)))
    groups = [[] for _ in range(nshards)]
    acc = 0
    for n, sz in zip(names, sizes):
        k = min(nshards - 1, int(acc * nshards // max(total, 1)))
        groups[k].append(n)
        acc += sz
    groups = [g for g in groups if g]
    nshards = len(groups)
    weight_map = {}
    for i, g in enumerate(groups):
        fn = st.SINGLE_NAME if nshards == 1 else f"model-{i + 1:05d}-of-{nshards:05d}.safetensors"
        w = st.StreamWriter(os.path.join(args.out, fn), [(n, st_dtype, shapes[n]) for n in g], {"format": "pt"})
        for n in g:
            special = edge_tensor(n, shapes[n], args.seed, st_dtype) if args.edge else None
            chunks = [special] if special is not None else gen_chunks(n, shapes[n], args.seed)
            for c in chunks:
                w.write(n, ref.f32_to_storage(c, st_dtype))
            weight_map[n] = fn
        w.close()
    if nshards > 1:
        st.write_index(args.out, weight_map, total)
    print(f"wrote {len(names)} tensors, {total} bytes, {nshards} file(s) to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
