# Independent oracle for `fp4z quantize --method absmax`: compressed-tensors NVFP4 math from nvfp4-format.md §2.3/§7.
"""usage: oracle_absmax.py SRC OUT_DIR [--ignore GLOB]... [--canonical-zero] [--f16-global f32|f16]
                          [--f16-block f16|f32]

F16 sources: the global scale is computed in f32 (nvfp4-format.md §2.3, fp4z's documented deviation);
the block scale q = rnd_src(amax_b/6) is rounded to F16 as step 2 states (--f16-block f32 skips that).

Writes OUT_DIR/model.safetensors (every expected tensor, source order, single file), OUT_DIR/config.json
(source config + the §3.1 quantization_config) and copies every other non-safetensors file of SRC.
Exit 2 (with a one-line message, nothing written) on a non-finite source weight or a missing config.json.
"""
import argparse
import fnmatch
import json
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io as st  # noqa: E402
import nvfp4_ref as ref  # noqa: E402

F32 = np.float32


def quantization_config(ignore):
    return {
        "config_groups": {
            "group_0": {
                "format": "nvfp4-pack-quantized",
                "input_activations": None,
                "output_activations": None,
                "targets": ["Linear"],
                "weights": {
                    "actorder": None, "block_structure": None, "dynamic": False, "group_size": 16,
                    "num_bits": 4, "observer": "memoryless_minmax", "observer_kwargs": {},
                    "scale_dtype": "torch.float8_e4m3fn", "strategy": "tensor_group",
                    "symmetric": True, "type": "float", "zp_dtype": None,
                },
            }
        },
        "format": "nvfp4-pack-quantized",
        "global_compression_ratio": None,
        "ignore": ignore,
        "kv_cache_scheme": None,
        "quant_method": "compressed-tensors",
        "quantization_status": "compressed",
        "sparsity_config": {},
        "transform_config": {},
        "version": "0.13.0",
    }


def is_linear_weight(name, shape):
    if not name.endswith(".weight") or len(shape) != 2:
        return False
    prefix = name[: -len(".weight")]
    return not (prefix.endswith("embed_tokens") or prefix == "lm_head" or prefix.endswith(".lm_head"))


def global_scale(amax, src_dtype, f16_mode):
    """gs = f32(rnd_src(fl(rnd_src(fl(1/amax)) * 2688))); 1.0 for amax 0 or a non-finite result."""
    amax = F32(amax)
    if amax == F32(0):
        return F32(1.0)
    rs = src_dtype if not (src_dtype == "F16" and f16_mode == "f32") else "F32"
    with np.errstate(over="ignore", divide="ignore"):
        r = ref.rnd_src(F32(1) / amax, rs)
        gs = ref.rnd_src(F32(r) * F32(2688), rs)
    gs = F32(np.asarray(gs).reshape(-1)[0])
    if not np.isfinite(gs):
        return F32(1.0)
    return gs


def quantize(W, gs, src_dtype, canonical_zero, f16_block="f16"):
    """W: [N, K] exact f32 source values. Returns (packed u8 [N,K/2], scale bytes [N,K/16])."""
    N, K = W.shape
    Wb = W.reshape(N, K // 16, 16)
    amax_b = np.max(np.abs(Wb), axis=2).astype(F32)
    rs = "F32" if (src_dtype == "F16" and f16_block == "f32") else src_dtype
    q = ref.rnd_src((amax_b / F32(6)).astype(F32), rs).astype(F32)
    s = (F32(gs) * q).astype(F32)
    s = np.minimum(s, F32(448)).astype(F32)
    s8 = ref.e4m3_encode(s)
    s8 = np.where(s8 == 0, np.uint8(0x20), s8).astype(np.uint8)
    S = (ref.e4m3_decode(s8) / F32(gs)).astype(F32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        X = (Wb / S[:, :, None]).astype(F32)
    X = np.clip(X, F32(-6), F32(6)).astype(F32)  # no effect on codes
    codes = ref.e2m1_codes(X).reshape(N, K)
    if canonical_zero:
        codes = np.where(codes == 8, np.uint8(0), codes).astype(np.uint8)
    return ref.pack_codes(codes), s8


def fail(msg):
    print(f"oracle_absmax: error: {msg}", file=sys.stderr)
    sys.exit(2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--ignore", action="append", default=[])
    ap.add_argument("--canonical-zero", action="store_true")
    ap.add_argument("--f16-global", default="f32", choices=["f32", "f16"],
                    help="F16 sources: compute the global scale in f32 (fp4z's documented deviation) or in F16 like CT")
    ap.add_argument("--f16-block", default="f16", choices=["f16", "f32"],
                    help="F16 sources: q = rnd_f16(amax_b/6) as §2.3 step 2 says (default), or q in f32")
    args = ap.parse_args()

    cfg_path = os.path.join(args.src, "config.json")
    if not os.path.exists(cfg_path):
        fail(f"{cfg_path}: missing")
    with open(cfg_path) as f:
        cfg = json.load(f)
    ck = st.Checkpoint(args.src)

    # 1. decide which Linear weights are quantized, one decision per fused group
    linear = [n[: -len(".weight")] for n in ck.names if is_linear_weight(n, ck.info(n)[1])]
    groups = {}
    for p in linear:
        groups.setdefault(ref.fused_group_key(p) or p, []).append(p)
    keep = set()
    for key, members in groups.items():
        bad = False
        for p in members:
            dtype, shape = ck.info(p + ".weight")
            if shape[1] % 16 != 0 or any(fnmatch.fnmatchcase(p, g) for g in args.ignore):
                bad = True
        if bad:
            keep.update(members)
    quantized = [p for p in linear if p not in keep]

    # 2. validate (non-finite weights), then global scale per group from the group amax
    gs_of = {}
    for key, members in groups.items():
        members = [p for p in members if p not in keep]
        if not members:
            continue
        amax = F32(0)
        for p in members:
            dtype, _ = ck.info(p + ".weight")
            if dtype not in ("BF16", "F16", "F32"):
                fail(f"{p}.weight: unsupported dtype {dtype}")
            W = ref.storage_to_f32(ck.tensor(p + ".weight"), dtype)
            if not np.all(np.isfinite(W)):
                fail(f"{p}.weight: non-finite weight")
            if W.size:
                amax = max(amax, F32(np.max(np.abs(W))))
        gs = global_scale(amax, dtype, args.f16_global)
        for p in members:
            gs_of[p] = gs

    # 3. tensors, in source order, each quantized weight replaced in place by its three tensors
    os.makedirs(args.out, exist_ok=True)
    out = []
    qset = set(quantized)
    # A tied head stored with the embedding's exact bytes is dropped (one shared table), as llm-compressor does.
    drop_head = (cfg.get("tie_word_embeddings", False) and "lm_head.weight" in ck.names
                 and "model.embed_tokens.weight" in ck.names
                 and ck.info("lm_head.weight") == ck.info("model.embed_tokens.weight")
                 and bytes(ck.raw_bytes("lm_head.weight")) == bytes(ck.raw_bytes("model.embed_tokens.weight")))
    for n in ck.names:
        if drop_head and n == "lm_head.weight":
            continue
        dtype, shape = ck.info(n)
        p = n[: -len(".weight")] if n.endswith(".weight") else None
        if p in qset:
            W = ref.storage_to_f32(ck.tensor(n), dtype)
            packed, s8 = quantize(W, gs_of[p], dtype, args.canonical_zero, args.f16_block)
            out.append((p + ".weight_packed", "U8", packed))
            out.append((p + ".weight_scale", "F8_E4M3", s8))
            out.append((p + ".weight_global_scale", "F32", np.array([gs_of[p]], dtype=F32)))
        else:
            out.append((n, dtype, np.array(ck.tensor(n))))
    st.write_file(os.path.join(args.out, st.SINGLE_NAME), out, {"format": "pt"})

    ignore = ["lm_head"] + [p for p in linear if p in keep]
    cfg["quantization_config"] = quantization_config(ignore)
    # compressed-tensors decompresses NVFP4 to BF16 whatever the model dtype (checked against the real
    # library in tests/interop): the output declares bfloat16 compute under whichever dtype key it has.
    keys = [k for k in ("torch_dtype", "dtype") if k in cfg] or ["torch_dtype"]
    for k in keys:
        cfg[k] = "bfloat16"
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    for fn in sorted(os.listdir(args.src)):
        if fn.endswith(".safetensors") or fn == st.INDEX_NAME or fn == "config.json":
            continue
        full = os.path.join(args.src, fn)
        if os.path.isfile(full):
            shutil.copyfile(full, os.path.join(args.out, fn))
    print(f"oracle_absmax: {len(quantized)} quantized, {len(keep)} kept Linear", file=sys.stderr)


if __name__ == "__main__":
    main()
