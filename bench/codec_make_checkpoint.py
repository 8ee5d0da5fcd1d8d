#!/usr/bin/python3
# Writes a synthetic compressed-tensors NVFP4 checkpoint (absmax codes of random weights, BF16 embedding
# and norms, config/tokenizer files) for the compression benchmarks; optionally its BF16 source too.
import argparse
import json
import os

import numpy as np

E2M1_THRESH = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]


def e4m3_table():
    vals = []
    for b in range(0x7F):
        e, m = (b >> 3) & 0xF, b & 7
        vals.append(m / 512.0 if e == 0 else (1 + m / 8.0) * 2.0 ** (e - 7))
    return np.array(vals, dtype=np.float64)


E4M3 = e4m3_table()
E4M3_MID = (E4M3[1:] + E4M3[:-1]) / 2


def bf16_bits(x):
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)


def quantize(w):
    """Absmax NVFP4 of an [N, K] f32 matrix: packed codes, scale bytes, global scale."""
    n, k = w.shape
    amax_t = float(np.abs(w).max())
    gs = np.float32(2688.0 / amax_t)
    blocks = w.reshape(n, k // 16, 16)
    amax_b = np.abs(blocks).max(axis=2)
    s = np.minimum(gs * (amax_b / 6.0).astype(np.float32), 448.0)
    s8 = np.searchsorted(E4M3_MID, s).astype(np.uint8)
    s8[s8 == 0] = 0x20
    S = (E4M3[s8] / gs).astype(np.float32)
    x = blocks / S[:, :, None]
    a = np.abs(x)
    mag = np.zeros(a.shape, dtype=np.uint8)
    for i, t in enumerate(E2M1_THRESH):
        mag += (a >= t) if i in (1, 3, 5) else (a > t)
    codes = (mag | ((x < 0).astype(np.uint8) << 3)).reshape(n, k)
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
    return packed, s8, gs


def write_safetensors(path, tensors):
    header, offset, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, dtype, shape, data in tensors:
        b = data.tobytes()
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--inter", type=int, default=2816)
    ap.add_argument("--vocab", type=int, default=16000)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--dist", choices=["gauss", "t5"], default="gauss")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--source", help="also write the BF16 source checkpoint here")
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    os.makedirs(a.out, exist_ok=True)
    h, f = a.hidden, a.inter
    q, src = [], []

    def weight(n, k):
        w = rng.standard_normal((n, k), dtype=np.float32) if a.dist == "gauss" else rng.standard_t(5, (n, k)).astype(np.float32)
        w *= 0.02
        # row-norm variation, as real checkpoints have
        w *= np.exp(rng.normal(0, 0.3, (n, 1))).astype(np.float32)
        return np.frombuffer((bf16_bits(w).astype(np.uint32) << 16).tobytes(), dtype=np.float32).reshape(n, k)

    emb = weight(a.vocab, h)
    q.append(("model.embed_tokens.weight", "BF16", (a.vocab, h), bf16_bits(emb)))
    src.append(q[-1])
    for layer in range(a.layers):
        for name, n, k in [("self_attn.q_proj", h, h), ("self_attn.k_proj", h // 4, h), ("self_attn.v_proj", h // 4, h),
                           ("self_attn.o_proj", h, h), ("mlp.gate_proj", f, h), ("mlp.up_proj", f, h),
                           ("mlp.down_proj", h, f)]:
            m = f"model.layers.{layer}.{name}"
            w = weight(n, k)
            packed, s8, gs = quantize(w)
            q.append((m + ".weight_packed", "U8", packed.shape, packed))
            q.append((m + ".weight_scale", "F8_E4M3", s8.shape, s8))
            q.append((m + ".weight_global_scale", "F32", (1,), np.array([gs], dtype=np.float32)))
            src.append((m + ".weight", "BF16", (n, k), bf16_bits(w)))
        for nn in ["input_layernorm", "post_attention_layernorm"]:
            t = (f"model.layers.{layer}.{nn}.weight", "BF16", (h,), bf16_bits(1 + 0.1 * rng.standard_normal(h, dtype=np.float32)))
            q.append(t)
            src.append(t)
    q.append(("model.norm.weight", "BF16", (h,), bf16_bits(np.ones(h, dtype=np.float32))))
    src.append(q[-1])

    def write_ckpt(out, tensors):
        os.makedirs(out, exist_ok=True)
        if a.shards == 1:
            write_safetensors(os.path.join(out, "model.safetensors"), tensors)
        else:
            per = (len(tensors) + a.shards - 1) // a.shards
            wm, total = {}, 0
            for s in range(a.shards):
                part = tensors[s * per:(s + 1) * per]
                fn = f"model-{s + 1:05d}-of-{a.shards:05d}.safetensors"
                write_safetensors(os.path.join(out, fn), part)
                for t in part:
                    wm[t[0]] = fn
                    total += t[3].nbytes
            with open(os.path.join(out, "model.safetensors.index.json"), "w") as fo:
                json.dump({"metadata": {"total_size": total}, "weight_map": wm}, fo, indent=2)
        cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": h, "intermediate_size": f,
               "num_hidden_layers": a.layers, "vocab_size": a.vocab, "torch_dtype": "bfloat16"}
        with open(os.path.join(out, "config.json"), "w") as fo:
            json.dump(cfg, fo, indent=2)
        with open(os.path.join(out, "tokenizer.json"), "w") as fo:
            json.dump({"model": {"vocab": {f"tok{i}": i for i in range(min(a.vocab, 5000))}}}, fo, indent=2)

    write_ckpt(a.out, q)
    if a.source:
        write_ckpt(a.source, src)


if __name__ == "__main__":
    main()
