# Small checkpoint utilities for the quantize tests: dump tensor bytes, patch templates, hash trees, check codes.
"""usage:
  st_tool.py hex DIR TENSOR                 print the tensor's bytes as lowercase hex (one line)
  st_tool.py count-code8 DIR                print the number of code-8 nibbles over all *.weight_packed
  st_tool.py dequant-equal DIR_A DIR_B      exit 0 if every quantized Linear dequantizes to the same values
  st_tool.py zero-scales SRC OUT PREFIX [ROW BLOCK]
                                            copy checkpoint SRC to OUT (single file), setting the template
                                            FP8 scale of PREFIX to 0x00 (whole tensor, or one block)
  st_tool.py set-shape SRC OUT TENSOR       copy SRC to OUT, giving TENSOR one row less (shape mismatch)
  st_tool.py set-value SRC OUT TENSOR VALUE copy SRC to OUT with element [0,0] of TENSOR set to VALUE (inf/nan;
                                            for F8_E4M3 tensors VALUE is a byte, e.g. 0x7f)
  st_tool.py reshard SRC OUT N              copy SRC to OUT as N shards with model.safetensors.index.json
  st_tool.py owner-check TEMPLATE OUT ALPHA for template layers whose largest FP8 scale is 448: OUT keeps the
                                            template's FP8 bytes and S1/S0 = ALPHA within 1 ulp (seed §4, §10)
  st_tool.py tree-hash DIR                  sha256 over relative paths and contents of every file
"""
import hashlib
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io as st  # noqa: E402
import nvfp4_ref as ref  # noqa: E402


def copy_with(src, out, fn):
    """Copies checkpoint src to out as one file; fn(name, dtype, array) -> (dtype, array) or None to keep."""
    ck = st.Checkpoint(src)
    os.makedirs(out, exist_ok=True)
    tensors = []
    for n in ck.names:
        d, _ = ck.info(n)
        a = np.array(ck.tensor(n))
        r = fn(n, d, a)
        tensors.append((n,) + (r if r is not None else (d, a)))
    st.write_file(os.path.join(out, st.SINGLE_NAME), tensors, ck.metadata())
    for f in os.listdir(src):
        if not f.endswith(".safetensors") and f != st.INDEX_NAME and os.path.isfile(os.path.join(src, f)):
            shutil.copyfile(os.path.join(src, f), os.path.join(out, f))


def dequant(ck, p):
    codes = ref.unpack_codes(np.array(ck.tensor(p + ".weight_packed")))
    s = ref.e4m3_decode(np.array(ck.tensor(p + ".weight_scale")))
    g = np.float32(np.array(ck.tensor(p + ".weight_global_scale")).reshape(-1)[0])
    S = (s / g).astype(np.float32)
    R, C = codes.shape
    return (ref.E2M1[codes].reshape(R, C // 16, 16) * S[:, :, None]).astype(np.float32).reshape(R, C)


def main():
    cmd = sys.argv[1]
    a = sys.argv[2:]
    if cmd == "hex":
        print(np.asarray(st.Checkpoint(a[0]).raw_bytes(a[1])).tobytes().hex())
    elif cmd == "count-code8":
        ck = st.Checkpoint(a[0])
        n = 0
        for t in ck.names:
            if t.endswith(".weight_packed"):
                n += int(np.sum(ref.unpack_codes(np.array(ck.tensor(t))) == 8))
        print(n)
    elif cmd == "dequant-equal":
        x, y = st.Checkpoint(a[0]), st.Checkpoint(a[1])
        ps = [t[: -len(".weight_packed")] for t in x.names if t.endswith(".weight_packed")]
        bad = 0
        for p in ps:
            u, v = dequant(x, p), dequant(y, p)
            if not np.array_equal(u, v):  # -0.0 == 0.0 for array_equal
                print(f"MISMATCH {p}: dequantized values differ")
                bad += 1
        print(f"{len(ps)} layers compared")
        return 1 if bad else 0
    elif cmd == "zero-scales":
        src, out, prefix = a[0], a[1], a[2]
        def fn(n, d, arr):
            if n == prefix + ".weight_scale":
                arr = arr.copy()
                if len(a) > 3:
                    arr[int(a[3]), int(a[4])] = 0
                else:
                    arr[...] = 0
                return d, arr
            return None
        copy_with(src, out, fn)
    elif cmd == "set-shape":
        copy_with(a[0], a[1], lambda n, d, arr: (d, arr[:-1].copy()) if n == a[2] else None)
    elif cmd == "set-value":
        def fn(n, d, arr):
            if n == a[2]:
                arr = arr.copy()
                if d == "F8_E4M3":
                    arr.reshape(-1)[0] = int(a[3], 0)
                else:
                    arr.reshape(-1)[0] = ref.f32_to_storage(np.array([float(a[3])], np.float32), d)[0]
                return d, arr
            return None
        copy_with(a[0], a[1], fn)
    elif cmd == "reshard":
        ck = st.Checkpoint(a[0])
        out, n = a[1], int(a[2])
        os.makedirs(out, exist_ok=True)
        names = ck.names
        per = -(-len(names) // n)
        wm, total = {}, 0
        for i in range(n):
            part = names[i * per:(i + 1) * per]
            fn = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            st.write_file(os.path.join(out, fn), [(t, ck.info(t)[0], np.array(ck.tensor(t))) for t in part],
                          ck.metadata())
            for t in part:
                wm[t] = fn
                total += np.asarray(ck.raw_bytes(t)).size
        st.write_index(out, wm, total)
        for f in os.listdir(a[0]):
            if not f.endswith(".safetensors") and f != st.INDEX_NAME and os.path.isfile(os.path.join(a[0], f)):
                shutil.copyfile(os.path.join(a[0], f), os.path.join(out, f))
    elif cmd == "owner-check":
        tpl, out, alpha = st.Checkpoint(a[0]), st.Checkpoint(a[1]), np.float32(float(a[2]))
        owners = bad = 0
        for t in tpl.names:
            if not t.endswith(".weight_scale"):
                continue
            p = t[: -len(".weight_scale")]
            ft = np.array(tpl.tensor(t))
            if ft.size == 0 or ref.E4M3_DECODE[ft].max() != 448:
                continue
            owners += 1
            f1 = np.array(out.tensor(t))
            gt = np.float32(np.array(tpl.tensor(p + ".weight_global_scale")).reshape(-1)[0])
            g1 = np.float32(np.array(out.tensor(p + ".weight_global_scale")).reshape(-1)[0])
            s0 = (ref.E4M3_DECODE[ft] / gt).astype(np.float32)
            s1 = (ref.E4M3_DECODE[f1] / g1).astype(np.float32)
            nz = s0 > 0
            ratio = (s1[nz] / s0[nz]).astype(np.float32)
            tol = np.spacing(alpha)
            if not np.array_equal(ft, f1):
                print(f"MISMATCH {p}: FP8 scales differ from the template's ({int(np.sum(ft != f1))} blocks)")
                bad += 1
            elif ratio.size and np.max(np.abs(ratio - alpha)) > tol:
                print(f"MISMATCH {p}: block ratio off by {np.max(np.abs(ratio - alpha))}")
                bad += 1
        print(f"{owners} owner layers checked")
        return 1 if bad or owners == 0 else 0
    elif cmd == "tree-hash":
        h = hashlib.sha256()
        for root, dirs, files in sorted(os.walk(a[0])):
            dirs.sort()
            for f in sorted(files):
                p = os.path.join(root, f)
                h.update(os.path.relpath(p, a[0]).encode() + b"\0")
                with open(p, "rb") as fh:
                    h.update(fh.read())
        print(h.hexdigest())
    else:
        raise SystemExit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
