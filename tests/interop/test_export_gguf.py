# fp4z export-gguf read back by independent readers: PyPI `gguf` (headers, metadata, tensors) and llama.cpp (logits).
"""Checks of `fp4z export-gguf` against oracles that share no code with fp4z:

* the PyPI `gguf` package (llama.cpp's own Python reader) parses the file; its NVFP4 and Q4_0
  dequantizers are compared with an independent numpy dequantization of the source safetensors
  (E2M1 x E4M3 tables written from the format spec, times the per-tensor global scale), Q4_0 bytes
  with gguf's numpy port of ggml's reference quantizer, and Llama q/k rows with convert_hf_to_gguf's
  permutation;
* llama.cpp itself (llama-cpp-python) loads the file, tokenizes like fp4z, and its logits are
  compared with fp4z's engine (`fp4z eval logits --exact`) on stories260K and a small Qwen3-shaped checkpoint.

Env: FP4Z_BINARY (build/fp4z), FP4Z_FIXTURES (shared fixtures dir).
"""
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader
from gguf import quants as gq

FP4Z = os.environ.get("FP4Z_BINARY", os.path.join(os.path.dirname(__file__), "..", "..", "build", "fp4z"))
FIXTURES = os.environ.get("FP4Z_FIXTURES", os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "fixtures"))
ORACLE = os.path.join(os.path.dirname(__file__), "..", "oracle_forward.py")

# ---------------------------------------------------------------- independent NVFP4 decoding (spec tables)
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from oracle_forward import E2M1, E4M3  # noqa: E402  (the numpy oracle's tables, written from the format spec)


def read_safetensors(path):
    buf = open(path, "rb").read()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n])
    dt = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "U8": np.uint8, "F8_E4M3": np.uint8}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        a = np.frombuffer(buf[8 + n + b:8 + n + e], dtype=dt[info["dtype"]]).reshape(info["shape"])
        if info["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        out[name] = (info["dtype"], a)
    return out


def nvfp4_products(packed, scales):
    """E2M1(code) * E4M3(scale) per element, [n, k], without the global scale."""
    codes = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(packed.shape[0], -1)
    return (E2M1[codes] * np.repeat(E4M3[scales], 16, axis=1)).astype(np.float32)  # exact in f32


def hf_linear(t, base):
    """(products or dense f32 [n, k], f32 weights, f32 global multiplier or None) of one linear.
    compressed-tensors divides by weight_global_scale, ModelOpt multiplies by weight_scale_2."""
    if base + ".weight_packed" in t:
        g = np.float32(t[base + ".weight_global_scale"][1].reshape(-1)[0])
        p = nvfp4_products(t[base + ".weight_packed"][1], t[base + ".weight_scale"][1])
        return p, p / g, np.float32(1) / g
    if base + ".weight_scale_2" in t:
        g = np.float32(t[base + ".weight_scale_2"][1].reshape(-1)[0])
        p = nvfp4_products(t[base + ".weight"][1], t[base + ".weight_scale"][1])
        return p, p * g, g
    w = t[base + ".weight"][1].astype(np.float32)
    return w, w, None


def permute_hf_to_gguf(w, n_head):
    """convert_hf_to_gguf.py LlamaModel.permute: rotate-half rows -> interleaved rows."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# ---------------------------------------------------------------- checkpoints and exports

def run(*args):
    r = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    assert r.returncode == 0, f"{args} failed ({r.returncode}): {r.stderr.strip()}"
    return r.stdout


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("export_gguf")
    st = os.path.join(FIXTURES, "stories260K")
    run(FP4Z, "import-llama2c", os.path.join(st, "stories260K.bin"), "--tokenizer", os.path.join(st, "tok512.bin"),
        "--out", d / "st", "-q")
    run(FP4Z, "quantize", "--source", d / "st", "--out", d / "st_ct", "-q")
    run(FP4Z, "quantize", "--source", d / "st", "--out", d / "st_mo", "--format", "modelopt", "-q")
    for fmt in ("ct", "modelopt"):
        out = d / ("qwen3_" + fmt)
        run(sys.executable, ORACLE, "make", "--arch", "qwen3-vocab", "--weights", fmt, "--out", out, "--seed", "7")
        for fn in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(os.path.join(FIXTURES, "qwen3-tokenizer", fn), out / fn)
    m = {}
    for name in ("st", "st_ct", "st_mo", "qwen3_ct", "qwen3_modelopt"):
        m[name] = (d / name, d / (name + ".gguf"))
        run(FP4Z, "export-gguf", d / name, "-o", d / (name + ".gguf"))
    for name in ("st_ct", "qwen3_ct"):
        m[name + "_q4"] = (d / name, d / (name + "_q4.gguf"))
        run(FP4Z, "export-gguf", d / name, "-o", d / (name + "_q4.gguf"), "--type", "q4_0")
    return m


def field(reader, key):
    f = reader.fields[key]
    if f.types[0] == 8 and len(f.types) == 1:  # string
        return bytes(f.parts[-1]).decode()
    if len(f.types) > 1:  # array
        if f.types[1] == 8:
            return [bytes(f.parts[i]).decode() for i in f.data]
        return [f.parts[i][0].item() for i in f.data]
    return f.parts[-1][0].item()


def gguf_weights(reader):
    """name -> (type, f32 values [rows, cols] as llama.cpp sees them, raw bytes)."""
    out = {}
    for t in reader.tensors:
        shape = [int(x) for x in reversed(t.shape)]  # outermost first
        if t.tensor_type in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
            vals = np.asarray(t.data, dtype=np.float32).reshape(shape)
        else:
            vals = gq.dequantize(np.asarray(t.data), t.tensor_type).reshape(shape)
        out[t.name] = (t.tensor_type, vals, np.asarray(t.data))
    return out


# ---------------------------------------------------------------- metadata

@pytest.mark.parametrize("name,arch", [("st_ct", "llama"), ("st_mo", "llama"), ("qwen3_ct", "qwen3"), ("qwen3_modelopt", "qwen3")])
def test_metadata(models, name, arch):
    src, path = models[name]
    cfg = json.load(open(src / "config.json"))
    r = GGUFReader(path)
    assert field(r, "general.architecture") == arch
    assert field(r, arch + ".block_count") == cfg["num_hidden_layers"]
    assert field(r, arch + ".embedding_length") == cfg["hidden_size"]
    assert field(r, arch + ".feed_forward_length") == cfg["intermediate_size"]
    assert field(r, arch + ".attention.head_count") == cfg["num_attention_heads"]
    assert field(r, arch + ".attention.head_count_kv") == cfg["num_key_value_heads"]
    assert field(r, arch + ".attention.key_length") == cfg["head_dim"]
    assert field(r, arch + ".context_length") == cfg["max_position_embeddings"]
    assert field(r, arch + ".attention.layer_norm_rms_epsilon") == pytest.approx(cfg["rms_norm_eps"], rel=1e-6)
    assert field(r, arch + ".rope.freq_base") == pytest.approx(cfg["rope_theta"], rel=1e-6)
    assert field(r, "general.file_type") == 39  # LLAMA_FTYPE_MOSTLY_NVFP4
    tok = json.load(open(src / "tokenizer.json"))
    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type")
    assert len(tokens) == cfg["vocab_size"] == len(types)
    for text, i in tok["model"]["vocab"].items():
        assert tokens[i] == text
    for a in tok["added_tokens"]:
        assert tokens[a["id"]] == a["content"]
        assert types[a["id"]] in ((2, 3) if a["special"] else (4,))
    assert field(r, "tokenizer.ggml.bos_token_id") == cfg["bos_token_id"]
    eos = cfg["eos_token_id"]
    assert field(r, "tokenizer.ggml.eos_token_id") == (eos[0] if isinstance(eos, list) else eos)
    if arch == "qwen3":
        assert field(r, "tokenizer.ggml.model") == "gpt2"
        assert field(r, "tokenizer.ggml.pre") == "qwen2"
        merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
        assert field(r, "tokenizer.ggml.merges") == merges
        assert all(types[i] == 5 for i in range(len(tok["model"]["vocab"]) + len(tok["added_tokens"]), len(types)))
    else:
        assert field(r, "tokenizer.ggml.model") == "llama"
        assert [i for i, t in enumerate(types) if t == 6] == list(range(3, 259))  # <0x00>..<0xFF>
        scores = field(r, "tokenizer.ggml.scores")
        ids = tok["model"]["vocab"]
        # earlier merges must score strictly higher (SentencePiece picks the highest score)
        firsts = []
        seen = set()
        for mg in tok["model"]["merges"]:
            a, b = mg.split(" ") if isinstance(mg, str) else mg
            if a + b not in seen:
                seen.add(a + b)
                firsts.append(scores[ids[a + b]])
        assert all(x > y for x, y in zip(firsts, firsts[1:]))
    # W4A16 checkpoints: every NVFP4 tensor is tagged as needing >= 8-bit activations
    nv = [t.name for t in r.tensors if t.tensor_type == GGMLQuantizationType.NVFP4]
    assert nv and sorted(field(r, "general.tensor_extra.name")) == sorted(nv)
    assert field(r, "general.tensor_extra.prec_a4") == [False] * len(nv)


# ---------------------------------------------------------------- tensors

LINEARS = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
           "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
NORMS = {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_q_norm": "self_attn.q_norm",
         "attn_k_norm": "self_attn.k_norm"}


@pytest.mark.parametrize("name", ["st", "st_ct", "st_mo", "qwen3_ct", "qwen3_modelopt", "st_ct_q4", "qwen3_ct_q4"])
def test_tensors(models, name):
    src, path = models[name]
    cfg = json.load(open(src / "config.json"))
    llama = cfg["model_type"] == "llama"
    t = read_safetensors(src / "model.safetensors")
    g = gguf_weights(GGUFReader(path))
    q4 = name.endswith("_q4")
    expected = {"token_embd.weight", "output_norm.weight"}
    emb = t["model.embed_tokens.weight"][1].astype(np.float32)
    np.testing.assert_array_equal(g["token_embd.weight"][1], emb)
    np.testing.assert_array_equal(g["output_norm.weight"][1], t["model.norm.weight"][1].astype(np.float32))
    n_nvfp4 = 0
    for i in range(cfg["num_hidden_layers"]):
        for gn, hn in NORMS.items():
            key = f"model.layers.{i}.{hn}.weight"
            if key in t:
                expected.add(f"blk.{i}.{gn}.weight")
                np.testing.assert_array_equal(g[f"blk.{i}.{gn}.weight"][1], t[key][1].astype(np.float32))
        for gn, hn in LINEARS.items():
            w, full, gmul = hf_linear(t, f"model.layers.{i}.{hn}")
            heads = {"attn_q": cfg["num_attention_heads"], "attn_k": cfg["num_key_value_heads"]}.get(gn)
            if llama and heads:
                w, full = permute_hf_to_gguf(w, heads), permute_hf_to_gguf(full, heads)
            wn, sn = f"blk.{i}.{gn}.weight", f"blk.{i}.{gn}.scale"
            expected.add(wn)
            typ, vals, raw = g[wn]
            if q4 and full.shape[1] % 32 == 0:
                assert typ == GGMLQuantizationType.Q4_0
                # byte-exact against gguf's numpy port of ggml's quantize_row_q4_0_ref
                np.testing.assert_array_equal(raw.reshape(-1), gq.quantize(full, GGMLQuantizationType.Q4_0).reshape(-1))
                continue
            if gmul is None:
                np.testing.assert_array_equal(vals, w)
                continue
            assert typ == GGMLQuantizationType.NVFP4
            n_nvfp4 += 1
            np.testing.assert_array_equal(vals, w)  # products exact: lossless codes and block scales
            expected.add(sn)
            scale = g[sn][1].reshape(-1)
            assert scale.shape == (1,) and scale[0] == gmul
    if not q4 and name != "st":
        assert n_nvfp4 > 0
    assert set(g) == expected  # tied models: no output.weight (llama.cpp reuses token_embd)


def test_refuses_existing_output_and_bad_input(models, tmp_path):
    src, path = models["st_ct"]
    r = subprocess.run([FP4Z, "export-gguf", str(src), "-o", str(path)], capture_output=True, text=True)
    assert r.returncode == 2 and "exists" in r.stderr and r.stderr.count("\n") == 1
    bad = tmp_path / "no_tok"
    shutil.copytree(src, bad)
    os.remove(bad / "tokenizer.json")
    r = subprocess.run([FP4Z, "export-gguf", str(bad), "-o", str(tmp_path / "x.gguf")], capture_output=True, text=True)
    assert r.returncode == 2 and "tokenizer.json" in r.stderr and r.stderr.count("\n") == 1
    assert not os.path.exists(tmp_path / "x.gguf") and os.listdir(tmp_path) == ["no_tok"]


# ---------------------------------------------------------------- llama.cpp

STORY_IDS = [1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421]
QWEN_IDS = [151644, 872, 198, 9707, 11, 1246, 525, 498, 30, 151645, 198, 151644, 77091, 198]


def llama_cpp_logits(path, ids):
    import llama_cpp  # pinned in requirements-test.txt: a missing install fails here, it does not skip
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_batch=64, logits_all=True, verbose=False, n_threads=1,
                          type_k=0, type_v=0)  # F32 KV cache: compare the weights, not cache rounding
    llm.eval(ids)
    return np.array(llm.scores[:len(ids)], dtype=np.float32), llm


def fp4z_logits(model_dir, ids, tmp_path):
    out = tmp_path / "fp4z_logits.npy"
    run(FP4Z, "eval", "logits", "--model", model_dir, "--ids", ",".join(map(str, ids)), "-o", out, "--threads", "1",
        "--exact", "--force", "-q")
    return np.load(out)


# Measured here: F32 export 3.9e-7; NVFP4 1.7e-2 (stories260K), 9.8e-3 (Qwen3-shaped).
# llama.cpp multiplies F32 weights in f32 but quantizes activations to Q8_0 (32 values, one f16 scale)
# for NVFP4/Q4_0 weights; fp4z's reference path is f32 throughout. Tolerances: per position,
# max |a - b| <= tol * max |b|. A wrong layout, scale or permutation gives errors of order 1.
@pytest.mark.parametrize("name,ids,tol", [("st", STORY_IDS, 1e-5), ("st_ct", STORY_IDS, 3e-2), ("st_mo", STORY_IDS, 3e-2),
                                          ("qwen3_ct", QWEN_IDS, 3e-2), ("qwen3_modelopt", QWEN_IDS, 3e-2)])
def test_llama_cpp_logits_match_engine(models, tmp_path, name, ids, tol):
    src, path = models[name]
    got, _ = llama_cpp_logits(path, ids)
    ref = fp4z_logits(src, ids, tmp_path)
    assert got.shape == ref.shape
    err = np.abs(got - ref).max(axis=1) / np.abs(ref).max(axis=1)
    assert err.max() <= tol, f"relative max error per position {err}"
    assert (got.argmax(axis=1) == ref.argmax(axis=1)).mean() >= 0.9


def test_llama_cpp_tokenizes_like_fp4z(models):
    text = "Once upon a time, there was a little girl named Lily. She loved to play outside!"
    for name in ("st_ct", "qwen3_ct"):
        src, path = models[name]
        _, llm = llama_cpp_logits(path, [1])
        mine = json.loads(run(FP4Z, "tokenize", "--model", src, "--json", text))["ids"]
        theirs = llm.tokenize(text.encode(), add_bos=False, special=False)
        assert theirs == mine, name
