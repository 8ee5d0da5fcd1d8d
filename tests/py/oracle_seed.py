# Independent oracle for `fp4z quantize --method seed` (scale inflation), written from seed-method.md §2-§6 and §9.1.
"""usage: oracle_seed.py SRC TEMPLATE OUT [--alpha 2.0] [--include GLOB]... [--exclude GLOB]...
                        [--fused-global-scale] [--report-source S] [--report-template T] [--report-output O]

Writes OUT/model.safetensors (every template tensor in template order, the three tensors of each
selected prefix replaced; the template's __metadata__ kept), copies every other template file, and
writes OUT/nvfp4_scale_inflation_from_full_precision_export.json. The report's three directory strings
default to the arguments as given (pass the strings given to fp4z with --report-*).
Exit 2 with a one-line message (nothing written) on invalid input.
"""
import argparse
import fnmatch
import json
import math
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io as st  # noqa: E402
import nvfp4_ref as ref  # noqa: E402

F32 = np.float32
REPORT_NAME = "nvfp4_scale_inflation_from_full_precision_export.json"
CHUNK = 32768
SMALL_CODES = np.array([c in (0, 1, 2, 8, 9, 10) for c in range(16)])
ZERO_CODES = np.array([c in (0, 8) for c in range(16)])


def fail(msg):
    print(f"oracle_seed: error: {msg}", file=sys.stderr)
    sys.exit(2)


def select_prefixes(template_names, include, exclude):
    prefixes = [n[: -len(".weight_packed")] for n in template_names if n.endswith(".weight_packed")]
    keep = []
    for p in prefixes:
        if include and not any(fnmatch.fnmatchcase(p, g) for g in include):
            continue
        if any(fnmatch.fnmatchcase(p, g) for g in exclude):
            continue
        keep.append(p)
    return sorted(keep), prefixes


def chunk_entropy(packed_bytes):
    """Chunked even/odd plug-in byte entropy (§5). Returns (mean, std, n_chunks)."""
    b = np.asarray(packed_bytes, dtype=np.uint8).reshape(-1)
    n = b.size
    if n == 0:
        return 0.0, 0.0, 0
    hs = []
    for c0 in range(0, n, CHUNK):
        c = b[c0 : c0 + CHUNK]
        h = 0.0
        for half in (c[0::2], c[1::2]):
            if half.size == 0:
                continue
            counts = np.bincount(half, minlength=256).astype(np.float64)
            p = counts[counts > 0] / float(half.size)
            h += float(-np.sum(p * np.log2(p)))
        hs.append(h / 2.0)
    hs = np.array(hs, dtype=np.float64)
    return float(np.mean(hs)), float(np.std(hs)), len(hs)


def f32_of_double(x):
    return float(np.float32(x))


def mean_f32(values):
    """Mean accumulated in double, then rounded to f32."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    return f32_of_double(np.sum(v) / v.size) if v.size else float("nan")


def metrics(packed, codes, Wx, W, S, S0, g):
    numel = W.size
    mean_h, std_h, n_chunks = chunk_entropy(packed)
    diff = (Wx - W).astype(F32)
    with np.errstate(over="ignore"):
        sq = (diff * diff).astype(F32)
    mse = mean_f32(sq)
    denom = np.maximum(S0, F32(1e-12)).astype(F32)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (S / denom).astype(F32).astype(np.float64).reshape(-1)
    r_mean = f32_of_double(np.sum(ratio) / ratio.size)
    if ratio.size > 1:
        mu = np.sum(ratio) / ratio.size
        r_std = f32_of_double(math.sqrt(np.sum((ratio - mu) ** 2) / (ratio.size - 1)))
    else:
        r_std = float("nan")
    zero = mean_f32(ZERO_CODES[codes].astype(np.float64))
    small = mean_f32(SMALL_CODES[codes].astype(np.float64))
    return {
        "mean_entropy_bits": mean_h,
        "std_entropy_bits": std_h,
        "compression_rate": 1.0 - mean_h / 8.0,
        "compressed_size_ratio": mean_h / 8.0,
        "effective_bits_per_weight": 4 + 8 / 16 + 32 / numel,
        "mse_to_baseline": mse,
        "global_scale": float(g),
        "scale_ratio_mean": r_mean,
        "scale_ratio_std": r_std,
        "zero_fraction": zero,
        "small_code_fraction": small,
        "n_chunks": n_chunks,
    }


def load_prefix(src, tpl, p):
    if p + ".weight" not in src.where:
        fail(f"{p}.weight: missing in source")
    sd, sshape = src.info(p + ".weight")
    if sd not in ("BF16", "F16", "F32"):
        fail(f"{p}.weight: unsupported source dtype {sd}")
    if len(sshape) != 2:
        fail(f"{p}.weight: not 2-D")
    R, C = sshape
    names = {k: p + k for k in (".weight_packed", ".weight_scale", ".weight_global_scale")}
    for k, n in names.items():
        if n not in tpl.where:
            fail(f"{n}: missing in template")
    pd, pshape = tpl.info(names[".weight_packed"])
    sd8, s8shape = tpl.info(names[".weight_scale"])
    gd, gshape = tpl.info(names[".weight_global_scale"])
    if C % 16 != 0:
        fail(f"{p}: K={C} is not a multiple of 16")
    if pd != "U8" or pshape != [R, C // 2]:
        fail(f"{p}.weight_packed: {pd} {pshape} does not match source {sshape}")
    if sd8 != "F8_E4M3" or s8shape != [R, C // 16]:
        fail(f"{p}.weight_scale: {sd8} {s8shape} does not match source {sshape}")
    if gd != "F32" or st.numel(gshape) != 1:
        fail(f"{p}.weight_global_scale: {gd} {gshape}")
    s8 = np.array(tpl.tensor(names[".weight_scale"]), dtype=np.uint8)
    Ft = ref.e4m3_decode(s8)
    if not np.all(np.isfinite(Ft)) or np.any(Ft < 0):
        fail(f"{p}.weight_scale: non-finite or negative scale")
    gt = F32(np.array(tpl.tensor(names[".weight_global_scale"])).reshape(-1)[0])
    if not np.isfinite(gt) or gt < 0:
        fail(f"{p}.weight_global_scale: {gt}")
    # weights and template codes are read later, one prefix at a time (full-size models stream)
    return dict(Ft=Ft, gt=gt, gshape=gshape, R=R, C=C, sdtype=sd, packed_name=names[".weight_packed"])


def inflate(d, alpha):
    """Steps 1-2: S0, D."""
    S0 = (d["Ft"] / d["gt"]).astype(F32)
    D = (S0 * F32(alpha)).astype(F32)
    return S0, D


def global_from_max(M):
    """Step 4/5: g1 = fl(fl(1/M) * 448), or None when M == 0."""
    if M == F32(0):
        return None
    return F32(F32(F32(1) / F32(M)) * F32(448))


def requantize(d, S0, D, g1):
    """Steps 6-13. g1 None = the M == 0 path."""
    R, C = d["R"], d["C"]
    W = d["W"]
    nb = C // 16
    if g1 is None:
        F1 = np.zeros(D.shape, dtype=np.uint8)
        g1 = F32(1.0)
    else:
        N = (D * g1).astype(F32)
        N = np.minimum(np.maximum(N, F32(0)), F32(448)).astype(F32)
        F1 = ref.e4m3_encode(N) & np.uint8(0x7F)  # clamp result is >= 0; drop the sign of -0
    S1 = (ref.e4m3_decode(F1) / g1).astype(F32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        X = (W.reshape(R, nb, 16) / S1[:, :, None]).astype(F32)
    codes = ref.e2m1_codes(X).reshape(R, C)
    packed = ref.pack_codes(codes)
    Wq = (ref.E2M1[codes].reshape(R, nb, 16) * S1[:, :, None]).astype(F32).reshape(R, C)
    codes_t = ref.unpack_codes(d["packed_t"])
    Wb = (ref.E2M1[codes_t].reshape(R, nb, 16) * S0[:, :, None]).astype(F32).reshape(R, C)
    return dict(F1=F1, g1=g1, S1=S1, codes=codes, packed=packed, Wq=Wq, codes_t=codes_t, Wb=Wb)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("template")
    ap.add_argument("out")
    ap.add_argument("--alpha", type=float, default=2.0)
    ap.add_argument("--include", action="append", default=[])
    ap.add_argument("--exclude", action="append", default=[])
    ap.add_argument("--fused-global-scale", action="store_true")
    ap.add_argument("--report-source")
    ap.add_argument("--report-template")
    ap.add_argument("--report-output")
    args = ap.parse_args()

    src = st.Checkpoint(args.src)
    tpl = st.Checkpoint(args.template)
    selected, all_prefixes = select_prefixes(tpl.names, args.include, args.exclude)

    data = {p: load_prefix(src, tpl, p) for p in selected}  # validates everything before writing
    sd = {p: inflate(data[p], args.alpha) for p in selected}

    g1_of = {}
    if args.fused_global_scale:
        groups = {}
        for p in all_prefixes:
            k = ref.fused_group_key(p)
            if k is not None:
                groups.setdefault(k, []).append(p)
        sel = set(selected)
        for p in selected:
            k = ref.fused_group_key(p)
            members = groups.get(k, [p]) if k is not None else [p]
            if any(m not in sel for m in members):
                fail(f"{p}: selection holds only part of its fused group {k}")
            M = max(F32(np.max(sd[m][1])) if sd[m][1].size else F32(0) for m in members)
            g1_of[p] = global_from_max(M)
    else:
        for p in selected:
            D = sd[p][1]
            g1_of[p] = global_from_max(F32(np.max(D)) if D.size else F32(0))

    os.makedirs(args.out, exist_ok=True)
    results = {}
    layers = []
    for p in selected:
        d = data[p]
        S0, D = sd[p]
        d["W"] = ref.storage_to_f32(src.tensor(p + ".weight"), d["sdtype"])
        d["packed_t"] = np.array(tpl.tensor(d["packed_name"]), dtype=np.uint8)
        r = requantize(d, S0, D, g1_of[p])
        base = metrics(d["packed_t"], r["codes_t"], r["Wb"], d["W"], S0, S0, d["gt"])
        new = metrics(r["packed"], r["codes"], r["Wq"], d["W"], r["S1"], S0, r["g1"])
        results[p] = {"packed": r["packed"], "F1": r["F1"], "g1": r["g1"]}
        del d["W"], d["packed_t"], r
        layers.append({"layer": p, "shape": [d["R"], d["C"]], "num_weights": d["R"] * d["C"],
                       "baseline": base, "alpha_only": new, "optimized": None})

    # output tensors: template order, replacements in place
    replaced = {}
    for p, r in results.items():
        replaced[p + ".weight_packed"] = ("U8", r["packed"])
        replaced[p + ".weight_scale"] = ("F8_E4M3", r["F1"])
        replaced[p + ".weight_global_scale"] = ("F32", np.array([r["g1"]], dtype=F32).reshape(data[p]["gshape"]))
    out = []
    for n in tpl.names:
        dtype, shape = tpl.info(n)
        if n in replaced:
            out.append((n,) + replaced[n])
        else:
            out.append((n, dtype, np.asarray(tpl.tensor(n))))
    st.write_file(os.path.join(args.out, st.SINGLE_NAME), out, tpl.metadata())
    for fn in sorted(os.listdir(args.template)):
        if fn.endswith(".safetensors") or fn == st.INDEX_NAME:
            continue
        full = os.path.join(args.template, fn)
        if os.path.isfile(full):
            shutil.copyfile(full, os.path.join(args.out, fn))

    nw = [l["num_weights"] for l in layers]
    total = float(sum(nw))

    def agg(block, field):
        acc = 0.0
        for l in layers:
            acc += float(l["num_weights"]) * float(l[block][field])
        return acc / total if total else float("nan")

    report = {
        "full_precision_model_dir": args.report_source if args.report_source is not None else args.src,
        "template_nvfp4_dir": args.report_template if args.report_template is not None else args.template,
        "output_dir": args.report_output if args.report_output is not None else args.out,
        "alpha": float(args.alpha),
        "num_modified_layers": len(selected),
        "num_optimized_layers": 0,
        "include_patterns": args.include,
        "exclude_patterns": args.exclude,
        "aggregate": {
            "num_layers": len(selected),
            "num_optimized_layers": 0,
            "baseline_weighted_compression_rate": agg("baseline", "compression_rate"),
            "alpha_only_weighted_compression_rate": agg("alpha_only", "compression_rate"),
            "baseline_weighted_mse": agg("baseline", "mse_to_baseline"),
            "alpha_only_weighted_mse": agg("alpha_only", "mse_to_baseline"),
        },
        "layers": layers,
    }
    with open(os.path.join(args.out, REPORT_NAME), "w") as f:
        f.write(json.dumps(report, indent=2))
    print(f"oracle_seed: {len(selected)} layers", file=sys.stderr)


if __name__ == "__main__":
    main()
