#!/usr/bin/python3
"""Independent oracle for `fp4z import-llama2c`: reads a llama2.c legacy .bin and the produced
Hugging Face checkpoint (own safetensors parser, numpy only) and checks every tensor value, the
q/k RoPE permutation (by index arithmetic and by comparing rotated attention scores), and config.json.

usage: oracle_llama2c.py MODEL.bin OUT_DIR [--dtype f32|bf16|f16]
Prints "OK ..." and exits 0, or prints the first mismatches and exits 1.
"""
import json
import struct
import sys

import numpy as np


def read_llama2c(path):
    raw = open(path, "rb").read()
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack("<7i", raw[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    floats = np.frombuffer(raw, dtype="<f4", offset=28)
    head = dim // heads
    kv_dim = head * kv_heads
    sizes = [
        ("tok", (vocab, dim)), ("rms_att", (layers, dim)), ("wq", (layers, dim, dim)),
        ("wk", (layers, kv_dim, dim)), ("wv", (layers, kv_dim, dim)), ("wo", (layers, dim, dim)),
        ("rms_ffn", (layers, dim)), ("w1", (layers, hidden, dim)), ("w2", (layers, dim, hidden)),
        ("w3", (layers, hidden, dim)), ("rms_final", (dim,)), ("freq_real", (seq_len, head // 2)),
        ("freq_imag", (seq_len, head // 2)),
    ]
    if not shared:
        sizes.append(("wcls", (vocab, dim)))
    out, pos = {}, 0
    for name, shape in sizes:
        n = int(np.prod(shape))
        out[name] = floats[pos:pos + n].reshape(shape)
        pos += n
    assert pos == floats.size, f"{path}: {floats.size - pos} floats unaccounted for"
    hp = dict(dim=dim, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, vocab=vocab,
              seq_len=seq_len, shared=shared, head=head)
    return hp, out


def read_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    np_dtypes = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}
    tensors = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        arr = np.frombuffer(raw[base + b:base + e], dtype=np_dtypes[info["dtype"]])
        tensors[name] = (info["dtype"], arr.reshape(info["shape"]))
    return meta, tensors


def bf16_rne_bits(x):
    """float32 array -> bf16 bit patterns, round to nearest even (finite inputs)."""
    u = x.astype("<f4").view("<u4").astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def hf_permute(w, n_heads):
    """Meta/HF convert_llama_weights_to_hf: view(heads, rows/heads/2, 2, cols).transpose(1, 2)."""
    rows, cols = w.shape
    return w.reshape(n_heads, rows // n_heads // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def rope_llama2c(v, pos, head):
    """run.c: rotate adjacent pairs (v[i], v[i+1]) with freq 10000^-(i % head / head)."""
    out = v.astype(np.float64).copy()
    for i in range(0, v.size, 2):
        hd = i % head
        ang = pos * (1.0 / (10000.0 ** (hd / head)))
        c, s = np.cos(ang), np.sin(ang)
        a, b = out[i], out[i + 1]
        out[i], out[i + 1] = a * c - b * s, a * s + b * c
    return out


def rope_hf(v, pos, head):
    """transformers Llama: q * cos + rotate_half(q) * sin per head, inv_freq over arange(0, head, 2)."""
    inv = 1.0 / (10000.0 ** (np.arange(0, head, 2, dtype=np.float64) / head))
    ang = np.concatenate([pos * inv, pos * inv])
    x = v.astype(np.float64).reshape(-1, head)
    half = head // 2
    rot = np.concatenate([-x[:, half:], x[:, :half]], axis=1)
    return (x * np.cos(ang) + rot * np.sin(ang)).reshape(-1)


def main():
    args = sys.argv[1:]
    dtype = "f32"
    if "--dtype" in args:
        i = args.index("--dtype")
        dtype = args[i + 1]
        del args[i:i + 2]
    model_path, out_dir = args
    hp, w = read_llama2c(model_path)
    meta, st = read_safetensors(out_dir + "/model.safetensors")
    errors = []

    if meta.get("format") != "pt":
        errors.append(f"__metadata__ format is {meta.get('format')!r}")
    want_dtype = {"f32": "F32", "bf16": "BF16", "f16": "F16"}[dtype]

    L, H, KV = hp["layers"], hp["heads"], hp["kv_heads"]
    expected = {"model.embed_tokens.weight": w["tok"], "model.norm.weight": w["rms_final"]}
    # The permutation, written as explicit index arithmetic: HF row (h, j, i) <- llama2.c row (h, i, j).
    def permute_rows(m, n_heads):
        head = m.shape[0] // n_heads
        idx = [h * head + 2 * i + j for h in range(n_heads) for j in range(2) for i in range(head // 2)]
        return m[idx]
    for l in range(L):
        p = f"model.layers.{l}."
        expected[p + "input_layernorm.weight"] = w["rms_att"][l]
        expected[p + "post_attention_layernorm.weight"] = w["rms_ffn"][l]
        expected[p + "self_attn.q_proj.weight"] = permute_rows(w["wq"][l], H)
        expected[p + "self_attn.k_proj.weight"] = permute_rows(w["wk"][l], KV)
        expected[p + "self_attn.v_proj.weight"] = w["wv"][l]
        expected[p + "self_attn.o_proj.weight"] = w["wo"][l]
        expected[p + "mlp.gate_proj.weight"] = w["w1"][l]
        expected[p + "mlp.down_proj.weight"] = w["w2"][l]
        expected[p + "mlp.up_proj.weight"] = w["w3"][l]
        # The two independent formulations of the permutation must agree.
        if not np.array_equal(hf_permute(w["wq"][l], H), expected[p + "self_attn.q_proj.weight"]):
            errors.append("oracle self-check: index permutation != HF reshape/transpose permutation (q)")
        if not np.array_equal(hf_permute(w["wk"][l], KV), expected[p + "self_attn.k_proj.weight"]):
            errors.append("oracle self-check: index permutation != HF reshape/transpose permutation (k)")
    if not hp["shared"]:
        expected["lm_head.weight"] = w["wcls"]

    missing = sorted(set(expected) - set(st))
    extra = sorted(set(st) - set(expected))
    if missing:
        errors.append(f"missing tensors: {missing}")
    if extra:
        errors.append(f"extra tensors: {extra}")
    for name, ref in expected.items():
        if name not in st:
            continue
        dt, arr = st[name]
        if dt != want_dtype:
            errors.append(f"{name}: dtype {dt}, expected {want_dtype}")
            continue
        if list(arr.shape) != list(ref.shape):
            errors.append(f"{name}: shape {list(arr.shape)}, expected {list(ref.shape)}")
            continue
        if dtype == "f32":
            ok = np.array_equal(arr.view("<u4"), np.ascontiguousarray(ref).astype("<f4").view("<u4"))
        elif dtype == "bf16":
            ok = np.array_equal(arr, bf16_rne_bits(np.ascontiguousarray(ref)))
        else:
            ok = np.array_equal(arr.view("<u2"), np.ascontiguousarray(ref).astype("<f2").view("<u2"))
        if not ok:
            errors.append(f"{name}: values differ")

    # Semantic check of the permutation: attention scores with llama2.c RoPE on the original
    # weights equal those with HF rotate-half RoPE on the converted weights (F32 only).
    if dtype == "f32" and not errors:
        rng = np.random.default_rng(0)
        head = hp["head"]
        group = H // KV
        for l in range(L):
            x1 = rng.standard_normal(hp["dim"])
            x2 = rng.standard_normal(hp["dim"])
            p1, p2 = 5, 17
            q_ref = rope_llama2c(w["wq"][l].astype(np.float64) @ x1, p1, head).reshape(H, head)
            k_ref = rope_llama2c(w["wk"][l].astype(np.float64) @ x2, p2, head).reshape(KV, head)
            qw = st[f"model.layers.{l}.self_attn.q_proj.weight"][1].astype(np.float64)
            kw = st[f"model.layers.{l}.self_attn.k_proj.weight"][1].astype(np.float64)
            q_hf = rope_hf(qw @ x1, p1, head).reshape(H, head)
            k_hf = rope_hf(kw @ x2, p2, head).reshape(KV, head)
            s_ref = np.array([q_ref[h] @ k_ref[h // group] for h in range(H)])
            s_hf = np.array([q_hf[h] @ k_hf[h // group] for h in range(H)])
            if not np.allclose(s_ref, s_hf, rtol=1e-9, atol=1e-9):
                errors.append(f"layer {l}: attention scores differ between llama2.c RoPE and HF RoPE")

    cfg = json.load(open(out_dir + "/config.json"))
    want_cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hp["dim"],
        "intermediate_size": hp["hidden"], "num_hidden_layers": L, "num_attention_heads": H,
        "num_key_value_heads": KV, "vocab_size": hp["vocab"], "max_position_embeddings": hp["seq_len"],
        "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": hp["shared"], "hidden_act": "silu",
        "torch_dtype": {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}[dtype],
        "bos_token_id": 1, "eos_token_id": 2,
    }
    for k, v in want_cfg.items():
        if cfg.get(k) != v:
            errors.append(f"config.json {k} = {cfg.get(k)!r}, expected {v!r}")
    for f in ("generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        try:
            json.load(open(out_dir + "/" + f))
        except Exception as e:  # noqa: BLE001 - any failure is a finding
            errors.append(f"{f}: {e}")

    if errors:
        for e in errors[:20]:
            print("MISMATCH", e)
        return 1
    print(f"OK {len(expected)} tensors match ({dtype}), layers {L}, heads {H}/{KV}, shared classifier {hp['shared']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
