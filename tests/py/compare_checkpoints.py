# Compares an expected checkpoint directory (from an oracle) with fp4z's output, tensor by tensor and file by file.
"""usage: compare_checkpoints.py EXPECTED ACTUAL [--order] [--metadata-from DIR] [--max-report N] [--skip-file NAME]...

Tensors: same name set, dtype, shape and bytes (sharding and file layout may differ). Files: every
non-safetensors file of EXPECTED must exist in ACTUAL with the same bytes, except config.json which is
compared as JSON (key order free; quantization_config.ignore compared as a set). ACTUAL may not hold
extra non-safetensors files. --order also requires the same tensor order (seed: template order).
--metadata-from DIR: ACTUAL's __metadata__ must contain DIR's __metadata__ (seed keeps the template's).
Always: ACTUAL's __metadata__ has format=pt. Exit 0 when equal, 1 with one line per mismatch otherwise.
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io as st  # noqa: E402
import nvfp4_ref as ref  # noqa: E402


def describe(dtype, raw, idx):
    """Human-readable element at byte-element index idx."""
    if dtype == "U8":
        b = int(raw[idx])
        return f"0x{b:02x}(codes {b & 15},{b >> 4})"
    if dtype == "F8_E4M3":
        b = int(raw[idx])
        return f"0x{b:02x}({ref.E4M3_DECODE[b]!r})"
    if dtype == "F32":
        return repr(float(raw[idx]))
    if dtype == "BF16":
        return f"0x{int(raw[idx]):04x}({float(ref.bf16_bits_to_f32(np.array([raw[idx]]))[0])!r})"
    return repr(raw[idx])


def compare_tensors(exp, act, errors, max_report):
    es, as_ = set(exp.names), set(act.names)
    for n in sorted(es - as_):
        errors.append(f"tensor missing in output: {n}")
    for n in sorted(as_ - es):
        errors.append(f"unexpected tensor in output: {n}")
    for n in exp.names:
        if n not in as_:
            continue
        ed, esh = exp.info(n)
        ad, ash = act.info(n)
        if ed != ad or esh != ash:
            errors.append(f"{n}: dtype/shape expected {ed} {esh}, got {ad} {ash}")
            continue
        eb, ab = np.asarray(exp.raw_bytes(n)), np.asarray(act.raw_bytes(n))
        if eb.size == ab.size and np.array_equal(eb, ab):
            continue
        et = np.asarray(exp.tensor(n)).reshape(-1)
        at = np.asarray(act.tensor(n)).reshape(-1)
        diff = np.nonzero(et.view(np.uint8 if et.itemsize == 1 else np.uint16 if et.itemsize == 2 else np.uint32)
                          != at.view(np.uint8 if at.itemsize == 1 else np.uint16 if at.itemsize == 2 else np.uint32))[0]
        shown = ", ".join(
            f"[{np.unravel_index(i, esh) if esh else i}] expected {describe(ed, et, i)} got {describe(ad, at, i)}"
            for i in diff[:max_report])
        errors.append(f"{n}: {diff.size} of {et.size} elements differ: {shown}")


def other_files(d):
    return sorted(fn for fn in os.listdir(d)
                  if os.path.isfile(os.path.join(d, fn)) and not fn.endswith(".safetensors") and fn != st.INDEX_NAME)


def json_diff(path, e, a, errors):
    if isinstance(e, dict) and isinstance(a, dict):
        for k in e:
            if k not in a:
                errors.append(f"config.json: {path}{k}: missing (expected {json.dumps(e[k])})")
        for k in a:
            if k not in e:
                errors.append(f"config.json: {path}{k}: unexpected key (value {json.dumps(a[k])})")
        for k in e:
            if k in a:
                if path + k == "quantization_config.ignore" and isinstance(e[k], list) and isinstance(a[k], list):
                    if sorted(e[k]) != sorted(a[k]):
                        errors.append(f"config.json: {path}{k}: expected {sorted(e[k])} got {sorted(a[k])}")
                    continue
                json_diff(path + k + ".", e[k], a[k], errors)
    elif type(e) != type(a) or e != a:  # noqa: E721 (bool vs int, 1 vs 1.0 matter in JSON)
        if isinstance(e, (int, float)) and isinstance(a, (int, float)) and not isinstance(e, bool) \
                and not isinstance(a, bool) and float(e) == float(a):
            return
        errors.append(f"config.json: {path[:-1]}: expected {json.dumps(e)} got {json.dumps(a)}")


def compare_files(exp_dir, act_dir, errors, skip):
    ef = [f for f in other_files(exp_dir) if f not in skip]
    af = [f for f in other_files(act_dir) if f not in skip]
    for fn in ef:
        if fn not in af:
            errors.append(f"file missing in output: {fn}")
            continue
        if fn == "config.json":
            with open(os.path.join(exp_dir, fn)) as f:
                e = json.load(f)
            with open(os.path.join(act_dir, fn)) as f:
                a = json.load(f)
            json_diff("", e, a, errors)
            continue
        with open(os.path.join(exp_dir, fn), "rb") as f:
            eb = f.read()
        with open(os.path.join(act_dir, fn), "rb") as f:
            ab = f.read()
        if eb != ab:
            errors.append(f"file {fn}: content differs ({len(eb)} vs {len(ab)} bytes)")
    for fn in af:
        if fn not in ef:
            errors.append(f"unexpected file in output: {fn}")


def check_index(act, errors):
    if act.index is None:
        return
    total = 0
    for n in act.names:
        d, s = act.info(n)
        total += st.numel(s) * st.STORAGE[d][1]
    ts = act.index.get("metadata", {}).get("total_size")
    if ts != total:
        errors.append(f"index total_size {ts}, tensors hold {total} bytes")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("expected")
    ap.add_argument("actual")
    ap.add_argument("--order", action="store_true")
    ap.add_argument("--metadata-from")
    ap.add_argument("--max-report", type=int, default=6)
    ap.add_argument("--skip-file", action="append", default=[], help="file compared elsewhere (seed report)")
    args = ap.parse_args()
    errors = []
    try:
        exp = st.Checkpoint(args.expected)
        act = st.Checkpoint(args.actual)
    except Exception as e:  # noqa: BLE001
        print(f"cannot read checkpoint: {e}")
        return 1
    compare_tensors(exp, act, errors, args.max_report)
    compare_files(args.expected, args.actual, errors, set(args.skip_file))
    check_index(act, errors)
    if args.order and [n for n in exp.names] != [n for n in act.names]:
        first = next((i for i, (x, y) in enumerate(zip(exp.names, act.names)) if x != y), min(len(exp.names), len(act.names)))
        errors.append(f"tensor order differs at position {first}: expected "
                      f"{exp.names[first] if first < len(exp.names) else None} got "
                      f"{act.names[first] if first < len(act.names) else None}")
    for fn, sf in act.files.items():
        md = sf.metadata or {}
        if md.get("format") != "pt":
            errors.append(f"{fn}: __metadata__ {md} lacks format=pt")
        if args.metadata_from:
            want = st.Checkpoint(args.metadata_from).metadata() or {}
            for k, v in want.items():
                if md.get(k) != v:
                    errors.append(f"{fn}: __metadata__[{k!r}] expected {v!r} got {md.get(k)!r}")
    for e in errors:
        print("MISMATCH " + e)
    if not errors:
        print(f"OK: {len(exp.names)} tensors and {len(other_files(args.expected))} files identical")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
