#!/usr/bin/python3
# Independent numpy oracle for the decoder forward pass, plus a generator of small test checkpoints.
#
# Written from the Hugging Face semantics in ../shared/design/inference.md §1 (Qwen3ForCausalLM,
# LlamaForCausalLM) and the NVFP4 formats of nvfp4-format.md §2/§5. It reads safetensors itself
# (no torch, no transformers) and computes in float64, except where Hugging Face fixes f32 values:
# RoPE inv_freq / angles / cos / sin are f32.
#
#   oracle_forward.py make --arch qwen3|llama --weights bf16|f32|ct|ct-w4a4|modelopt --out DIR [--seed N]
#   oracle_forward.py logits --model DIR --tokens 1,2,3|@FILE --out FILE [--act-quant] [--last]  (raw f32 [n, vocab])
#   oracle_forward.py llama2c --bin stories260K.bin --out DIR                       (HF F32 checkpoint)
import argparse
import json
import os
import struct
import sys

import numpy as np

E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], dtype=np.float64)


def e4m3_values():
    v = np.zeros(256)
    for b in range(256):
        e, m = (b >> 3) & 15, b & 7
        mag = m / 512.0 if e == 0 else (1 + m / 8.0) * 2.0 ** (e - 7)
        if b & 0x7F == 0x7F:
            mag = np.nan
        v[b] = -mag if b & 0x80 else mag
    return v


E4M3 = e4m3_values()

# ---------------------------------------------------------------- safetensors I/O

DT = {"F32": (np.float32, 4), "F16": (np.float16, 2), "BF16": (np.uint16, 2), "U8": (np.uint8, 1),
      "F8_E4M3": (np.uint8, 1), "I32": (np.int32, 4)}


def read_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        np_dt, _ = DT[info["dtype"]]
        arr = np.frombuffer(buf[base + b:base + e], dtype=np_dt).reshape(info["shape"])
        out[name] = (info["dtype"], arr)
    return out


def read_checkpoint(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    tensors = {}
    if os.path.exists(idx):
        files = sorted(set(json.load(open(idx))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    for f in files:
        tensors.update(read_safetensors(os.path.join(d, f)))
    return tensors


def write_safetensors(path, tensors):
    """tensors: list of (name, dtype string, numpy array with the stored bytes)."""
    header = {"__metadata__": {"format": "pt"}}
    off = 0
    blobs = []
    for name, dt, arr in tensors:
        data = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(data)]}
        off += len(data)
        blobs.append(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def bf16_bits(x):
    """float32 array -> bf16 bit patterns, round to nearest even."""
    b = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    b = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    return b.astype(np.uint16)


def bf16_round(x):
    return (bf16_bits(x).astype(np.uint32) << 16).view(np.float32)


def to_f64(dt, arr):
    if dt == "BF16":
        return (arr.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return arr.astype(np.float64)


# ---------------------------------------------------------------- NVFP4 (absmax generator, dequant)

def e4m3_encode_nearest(s):
    """Nearest non-negative E4M3 byte (ties to the even byte) for each value of s (f64, >= 0)."""
    vals = E4M3[:127]
    d = np.abs(s[..., None] - vals[None, :])
    best = np.argmin(d, axis=-1)  # first (lower, even-mantissa-ish) minimum on ties
    return best.astype(np.uint8)


def quantize_nvfp4(w):
    """Simple absmax NVFP4 of a [N, K] f32 matrix: (packed U8 [N,K/2], scales U8 [N,K/16], gs)."""
    n, k = w.shape
    amax = float(np.max(np.abs(w)))
    gs = np.float32(2688.0 / amax) if amax > 0 else np.float32(1.0)
    blocks = w.reshape(n, k // 16, 16).astype(np.float64)
    bmax = np.max(np.abs(blocks), axis=-1)
    s8 = e4m3_encode_nearest(np.minimum(bmax / 6.0 * float(gs), 448.0))
    s8[E4M3[s8] == 0] = 0x20
    S = E4M3[s8] / float(gs)
    X = np.clip(blocks / S[..., None], -6, 6)
    mags = np.abs(E2M1[:8])
    idx = np.argmin(np.abs(np.abs(X)[..., None] - mags), axis=-1)
    codes = (idx | np.where(X < 0, 8, 0)).astype(np.uint8).reshape(n, k)
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
    return packed, s8.reshape(n, k // 16), gs


def dequant_nvfp4(packed, scales, mul):
    n = packed.shape[0]
    codes = np.empty((n, packed.shape[1] * 2), dtype=np.uint8)
    codes[:, 0::2] = packed & 15
    codes[:, 1::2] = packed >> 4
    s = np.repeat(E4M3[scales], 16, axis=1)
    return E2M1[codes] * s * mul


# ---------------------------------------------------------------- the model

class Weights:
    def __init__(self, d):
        self.cfg = json.load(open(os.path.join(d, "config.json")))
        self.t = read_checkpoint(d)

    def vec(self, name):
        dt, a = self.t[name]
        return to_f64(dt, a)

    def linear(self, base):
        """(dense f64 weight, input_global_scale or None)."""
        if base + ".weight_packed" in self.t:
            gs = float(self.t[base + ".weight_global_scale"][1].reshape(-1)[0])
            w = dequant_nvfp4(self.t[base + ".weight_packed"][1], self.t[base + ".weight_scale"][1], 1.0) / gs
            ig = self.t.get(base + ".input_global_scale")
            return w, (float(ig[1].reshape(-1)[0]) if ig is not None else None)
        if base + ".weight_scale_2" in self.t:
            sf2 = float(self.t[base + ".weight_scale_2"][1].reshape(-1)[0])
            w = dequant_nvfp4(self.t[base + ".weight"][1], self.t[base + ".weight_scale"][1], sf2)
            isc = self.t.get(base + ".input_scale")
            return w, (1.0 / float(np.float32(isc[1].reshape(-1)[0])) if isc is not None else None)
        return self.vec(base + ".weight"), None


def fake_quant_act(x, gs):
    """compressed-tensors style dynamic local NVFP4 fake quantization of activations (f32 math)."""
    gs = np.float32(gs)
    xb = bf16_round(x.astype(np.float32))
    t, k = xb.shape
    out = xb.copy()
    blocks = xb.reshape(t, k // 16, 16)
    amax = np.max(np.abs(blocks), axis=-1)
    q = bf16_round(amax / np.float32(6.0))
    s = np.minimum(gs * q, np.float32(448.0))
    s8 = e4m3_encode_rne(s)
    s8[E4M3[s8] == 0] = 0x20
    S = (E4M3[s8].astype(np.float32) / gs).astype(np.float32)
    X = np.clip((blocks / S[..., None]).astype(np.float32), -6, 6)
    a = np.abs(X)
    idx = ((a > 0.25).astype(int) + (a >= 0.75) + (a > 1.25) + (a >= 1.75) + (a > 2.5) + (a >= 3.5) + (a > 5.0))
    val = np.where(X < 0, -1.0, 1.0) * np.abs(E2M1[:8])[idx]
    out = bf16_round((val.astype(np.float32) * S[..., None]).astype(np.float32)).reshape(t, k)
    return out.astype(np.float64)


def e4m3_encode_rne(s):
    """Round-to-nearest-even E4M3 encoding of non-negative f32 values <= 448."""
    vals = E4M3[:127]
    s = np.asarray(s, dtype=np.float64)
    hi = np.searchsorted(vals, s, side="left")  # first >= s
    hi = np.clip(hi, 0, 126)
    lo = np.clip(hi - 1, 0, 126)
    dlo, dhi = s - vals[lo], vals[hi] - s
    pick_hi = (dhi < dlo) | ((dhi == dlo) & (hi % 2 == 0))
    r = np.where(pick_hi, hi, lo)
    r = np.where(vals[hi] == s, hi, r)
    return r.astype(np.uint8)


def rms_norm(x, w, eps):
    return w * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def rope_tables(cfg, d, positions):
    theta = np.float32(cfg.get("rope_theta", (cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0)))
    inv = (np.float32(1.0) / (theta ** (np.arange(0, d, 2, dtype=np.float32) / np.float32(d)))).astype(np.float32)
    rs = cfg.get("rope_scaling")
    if rs and rs.get("rope_type", rs.get("type")) == "llama3":
        f, lo, hi, L = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
        new = []
        for v in inv.astype(np.float64):
            wl = 2 * np.pi / v
            if wl < L / hi:
                new.append(v)
            elif wl > L / lo:
                new.append(v / f)
            else:
                s = (L / wl - lo) / (hi - lo)
                new.append((1 - s) * v / f + s * v)
        inv = np.array(new, dtype=np.float32)
    ang = (np.asarray(positions, dtype=np.float32)[:, None] * inv[None, :]).astype(np.float32)
    return np.cos(ang).astype(np.float64), np.sin(ang).astype(np.float64)


def apply_rope(x, cos, sin):
    h = x.shape[-1] // 2
    a, b = x[..., :h], x[..., h:]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)


def forward(wts, tokens, act_quant=False, last_only=False):
    cfg = wts.cfg
    arch = cfg["architectures"][0]
    qwen = arch == "Qwen3ForCausalLM"
    H = cfg["hidden_size"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    d = cfg.get("head_dim") or H // nh
    eps = cfg.get("rms_norm_eps", 1e-6)
    T = len(tokens)
    x = wts.vec("model.embed_tokens.weight")[np.asarray(tokens)]
    cos, sin = rope_tables(cfg, d, np.arange(T))
    mask = np.triu(np.full((T, T), -np.inf), 1)

    def lin(base, inp):
        w, ig = wts.linear(base)
        if act_quant and ig is not None:
            inp = fake_quant_act(inp, ig)
        return inp @ w.T

    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        a = rms_norm(x, wts.vec(p + "input_layernorm.weight"), eps)
        q = lin(p + "self_attn.q_proj", a).reshape(T, nh, d)
        k = lin(p + "self_attn.k_proj", a).reshape(T, nkv, d)
        v = lin(p + "self_attn.v_proj", a).reshape(T, nkv, d)
        if qwen:
            q = rms_norm(q, wts.vec(p + "self_attn.q_norm.weight"), eps)
            k = rms_norm(k, wts.vec(p + "self_attn.k_norm.weight"), eps)
        q = apply_rope(q, cos[:, None, :], sin[:, None, :])
        k = apply_rope(k, cos[:, None, :], sin[:, None, :])
        out = np.zeros((T, nh, d))
        for h in range(nh):
            g = h // (nh // nkv)
            s = q[:, h, :] @ k[:, g, :].T * d ** -0.5 + mask
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            s /= s.sum(axis=-1, keepdims=True)
            out[:, h, :] = s @ v[:, g, :]
        x = x + lin(p + "self_attn.o_proj", out.reshape(T, nh * d))
        b = rms_norm(x, wts.vec(p + "post_attention_layernorm.weight"), eps)
        gt = lin(p + "mlp.gate_proj", b)
        up = lin(p + "mlp.up_proj", b)
        x = x + lin(p + "mlp.down_proj", gt / (1 + np.exp(-gt)) * up)
    x = rms_norm(x, wts.vec("model.norm.weight"), eps)
    if last_only:
        x = x[-1:]
    if cfg.get("tie_word_embeddings", False):
        head = wts.vec("model.embed_tokens.weight")
    else:
        head, _ = wts.linear("lm_head")
    return x @ head.T


# ---------------------------------------------------------------- test checkpoint generator

SHAPES = {
    # Qwen3-shaped (head_dim != hidden/heads like Qwen3-4B; tied; lm_head stored anyway like 0.6B)
    "qwen3": dict(architectures=["Qwen3ForCausalLM"], model_type="qwen3", hidden_size=256, intermediate_size=768,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=128,
                  rms_norm_eps=1e-6, vocab_size=512, tie_word_embeddings=True, rope_theta=1000000,
                  max_position_embeddings=4096, bos_token_id=1, eos_token_id=2, hidden_act="silu",
                  attention_bias=False, rope_scaling=None, use_sliding_window=False, torch_dtype="bfloat16"),
    # Llama-shaped (untied head, llama3 rope scaling, K = 352 not a multiple of 256)
    "llama": dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=128, intermediate_size=352,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                  rms_norm_eps=1e-5, vocab_size=384, tie_word_embeddings=False, rope_theta=10000.0,
                  max_position_embeddings=256, bos_token_id=1, eos_token_id=[2, 3], hidden_act="silu",
                  attention_bias=False, mlp_bias=False,
                  rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                    original_max_position_embeddings=64),
                  torch_dtype="bfloat16"),
    # Qwen3-shaped with the real Qwen3 vocabulary size (for tokenizer/MMLU tests), tiny otherwise
    "qwen3-vocab": dict(architectures=["Qwen3ForCausalLM"], model_type="qwen3", hidden_size=64, intermediate_size=128,
                        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=64,
                        rms_norm_eps=1e-6, vocab_size=151936, tie_word_embeddings=True, rope_theta=1000000,
                        max_position_embeddings=40960, bos_token_id=151643, eos_token_id=151645, hidden_act="silu",
                        attention_bias=False, rope_scaling=None, use_sliding_window=False, torch_dtype="bfloat16"),
}


def make(arch, weights, out, seed, untied=False, tied_head="distinct"):
    rng = np.random.default_rng(seed)
    cfg = dict(SHAPES[arch])
    if untied:
        cfg["tie_word_embeddings"] = False
    H, I, nh, nkv, d, V = (cfg["hidden_size"], cfg["intermediate_size"], cfg["num_attention_heads"],
                           cfg["num_key_value_heads"], cfg["head_dim"], cfg["vocab_size"])
    float_dt = "F32" if weights == "f32" else "BF16"
    if float_dt == "F32":
        cfg["torch_dtype"] = "float32"  # declared as stored, so loaders (llm-compressor's dtype="auto") keep F32

    def store_float(a):
        a = a.astype(np.float32)
        return (float_dt, a) if float_dt == "F32" else ("BF16", bf16_bits(a))

    tensors = []

    def add_float(name, a):
        dt, arr = store_float(a)
        tensors.append((name, dt, arr))

    def add_linear(name, n, k):
        w = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
        if weights in ("bf16", "f32"):
            add_float(name + ".weight", w)
            return
        w = bf16_round(w)
        packed, s8, gs = quantize_nvfp4(w)
        if weights.startswith("ct"):
            tensors.append((name + ".weight_packed", "U8", packed))
            tensors.append((name + ".weight_scale", "F8_E4M3", s8))
            tensors.append((name + ".weight_global_scale", "F32", np.array([gs], dtype=np.float32)))
            if weights == "ct-w4a4":
                tensors.append((name + ".input_global_scale", "F32", np.array([np.float32(2688.0 / 4.0)], dtype=np.float32)))
        else:  # modelopt: weight + weight_scale + weight_scale_2 (0-d multiplier)
            tensors.append((name + ".weight", "U8", packed))
            tensors.append((name + ".weight_scale", "F8_E4M3", s8))
            tensors.append((name + ".weight_scale_2", "F32", np.array(np.float32(1.0) / gs, dtype=np.float32).reshape(())))

    embed = rng.standard_normal((V, H))
    add_float("model.embed_tokens.weight", embed)
    for i in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % i
        add_float(p + "input_layernorm.weight", 1 + 0.1 * rng.standard_normal(H))
        add_linear(p + "mlp.down_proj", H, I)
        add_linear(p + "mlp.gate_proj", I, H)
        add_linear(p + "mlp.up_proj", I, H)
        add_float(p + "post_attention_layernorm.weight", 1 + 0.1 * rng.standard_normal(H))
        if arch.startswith("qwen3"):
            add_float(p + "self_attn.k_norm.weight", 1 + 0.1 * rng.standard_normal(d))
        add_linear(p + "self_attn.k_proj", nkv * d, H)
        add_linear(p + "self_attn.o_proj", H, nh * d)
        if arch.startswith("qwen3"):
            add_float(p + "self_attn.q_norm.weight", 1 + 0.1 * rng.standard_normal(d))
        add_linear(p + "self_attn.q_proj", nh * d, H)
        add_linear(p + "self_attn.v_proj", nkv * d, H)
    add_float("model.norm.weight", 1 + 0.1 * rng.standard_normal(H))
    # Qwen3: a stored lm_head that must be IGNORED (tied); Llama: the real, untied head. With a tied head,
    # --tied-head copy stores the embedding's values (like Qwen3-0.6B) and absent stores none (like Qwen3-4B).
    head = rng.standard_normal((V, H)) / np.sqrt(H)
    if cfg.get("tie_word_embeddings") and tied_head == "copy":
        head = embed
    if not (cfg.get("tie_word_embeddings") and tied_head == "absent"):
        add_float("lm_head.weight", head)
    os.makedirs(out, exist_ok=True)
    if weights.startswith("ct"):
        grp = {"format": "nvfp4-pack-quantized", "targets": ["Linear"], "input_activations": None,
               "weights": {"num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16,
                           "symmetric": True, "dynamic": False}}
        if weights == "ct-w4a4":
            grp["input_activations"] = dict(grp["weights"], dynamic="local")
        cfg["quantization_config"] = {"config_groups": {"group_0": grp}, "format": "nvfp4-pack-quantized",
                                      "ignore": ["lm_head"], "quant_method": "compressed-tensors",
                                      "quantization_status": "compressed"}
    if weights == "modelopt":
        json.dump({"producer": {"name": "modelopt", "version": "test"},
                   "quantization": {"quant_algo": "W4A16_NVFP4", "kv_cache_quant_algo": None, "group_size": 16,
                                    "exclude_modules": ["lm_head"]}}, open(os.path.join(out, "hf_quant_config.json"), "w"))
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
    write_safetensors(os.path.join(out, "model.safetensors"), tensors)


# ---------------------------------------------------------------- llama2.c -> HF (test helper)

def llama2c(bin_path, out):
    buf = open(bin_path, "rb").read()
    dim, hidden, L, nh, nkv, vocab, seq = struct.unpack("<7i", buf[:28])
    tied = vocab > 0
    vocab = abs(vocab)
    f = np.frombuffer(buf[28:], dtype=np.float32)
    hs = dim // nh
    off = [0]

    def take(*shape):
        n = int(np.prod(shape))
        a = f[off[0]:off[0] + n].reshape(shape)
        off[0] += n
        return a

    emb = take(vocab, dim)
    rms_att = take(L, dim)
    wq = take(L, dim, dim)
    wk = take(L, nkv * hs, dim)
    wv = take(L, nkv * hs, dim)
    wo = take(L, dim, dim)
    rms_ffn = take(L, dim)
    w1 = take(L, hidden, dim)
    w2 = take(L, dim, hidden)
    w3 = take(L, hidden, dim)
    rms_final = take(dim)

    def permute(w, heads):  # HF[h*hs + p*hs/2 + i] = llama2c[h*hs + 2i + p]
        return w.reshape(heads, hs // 2, 2, -1).transpose(0, 2, 1, 3).reshape(heads * hs, -1)

    t = [("model.embed_tokens.weight", "F32", emb)]
    for i in range(L):
        p = "model.layers.%d." % i
        t += [(p + "input_layernorm.weight", "F32", rms_att[i]),
              (p + "self_attn.q_proj.weight", "F32", permute(wq[i], nh)),
              (p + "self_attn.k_proj.weight", "F32", permute(wk[i], nkv)),
              (p + "self_attn.v_proj.weight", "F32", wv[i]),
              (p + "self_attn.o_proj.weight", "F32", wo[i]),
              (p + "post_attention_layernorm.weight", "F32", rms_ffn[i]),
              (p + "mlp.gate_proj.weight", "F32", w1[i]),
              (p + "mlp.down_proj.weight", "F32", w2[i]),
              (p + "mlp.up_proj.weight", "F32", w3[i])]
    t.append(("model.norm.weight", "F32", rms_final))
    if not tied:
        raise SystemExit("untied llama2.c models are not supported by this helper")
    cfg = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=dim, intermediate_size=hidden,
               num_hidden_layers=L, num_attention_heads=nh, num_key_value_heads=nkv, head_dim=hs,
               rms_norm_eps=1e-5, vocab_size=vocab, tie_word_embeddings=True, rope_theta=10000.0,
               max_position_embeddings=seq, bos_token_id=1, eos_token_id=2, hidden_act="silu", torch_dtype="float32")
    os.makedirs(out, exist_ok=True)
    json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=2)
    write_safetensors(os.path.join(out, "model.safetensors"), t)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--arch", required=True, choices=sorted(SHAPES))
    m.add_argument("--weights", required=True, choices=["bf16", "f32", "ct", "ct-w4a4", "modelopt"])
    m.add_argument("--out", required=True)
    m.add_argument("--seed", type=int, default=1)
    m.add_argument("--untied", action="store_true", help="untied head: lm_head.weight is the classifier")
    m.add_argument("--tied-head", default="distinct", choices=["distinct", "copy", "absent"],
                   help="tied models: store lm_head.weight with its own values, the embedding's, or not at all")
    lg = sub.add_parser("logits")
    lg.add_argument("--model", required=True)
    lg.add_argument("--tokens", required=True)
    lg.add_argument("--out", required=True)
    lg.add_argument("--act-quant", action="store_true")
    lg.add_argument("--last", action="store_true", help="only the last position's logits")
    lc = sub.add_parser("llama2c")
    lc.add_argument("--bin", required=True)
    lc.add_argument("--out", required=True)
    a = ap.parse_args()
    if a.cmd == "make":
        make(a.arch, a.weights, a.out, a.seed, a.untied, a.tied_head)
    elif a.cmd == "logits":
        toks = [int(t) for t in open(a.tokens[1:]).read().replace(",", " ").split()] if a.tokens.startswith("@") \
            else [int(t) for t in a.tokens.split(",")]
        logits = forward(Weights(a.model), toks, a.act_quant, a.last)
        logits.astype(np.float32).tofile(a.out)
    else:
        llama2c(a.bin, a.out)


if __name__ == "__main__":
    sys.exit(main())
