#!/usr/bin/python3
# Order-0 entropy bound of a checkpoint directory as defined in compression.md §3: per tensor, FP4 codes
# as nibbles, FP8 scales as bytes, BF16 as exponent-byte entropy + 8 raw sign/mantissa bits (F16/F32:
# the same with their exponent plane); prints bytes per role as JSON.
import json
import os
import sys

import numpy as np


def h0_bits(arr, k):
    c = np.bincount(arr.ravel(), minlength=k).astype(np.float64)
    p = c[c > 0] / arr.size
    return float(-(p * np.log2(p)).sum()) * arr.size


def main():
    root = sys.argv[1]
    out = {"codes": 0.0, "scales": 0.0, "float": 0.0, "tensor_bytes": 0}
    for dirpath, _, files in os.walk(root):
        for fn in sorted(files):
            if not fn.endswith(".safetensors"):
                continue
            path = os.path.join(dirpath, fn)
            with open(path, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                hdr = json.loads(f.read(n))
            data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
            names = set(hdr)
            for name, t in hdr.items():
                if name == "__metadata__":
                    continue
                b, e = t["data_offsets"]
                raw = np.asarray(data[b:e])
                out["tensor_bytes"] += e - b
                if e - b < 4096:
                    continue
                dt = t["dtype"]
                if dt == "U8" and (name.endswith(".weight_packed") or (name.endswith(".weight") and name + "_scale" in names)):
                    nib = np.concatenate([raw & 15, raw >> 4])
                    out["codes"] += h0_bits(nib, 16) / 8
                elif dt == "F8_E4M3":
                    out["scales"] += h0_bits(raw, 256) / 8
                elif dt == "BF16":
                    v = raw.view(np.uint16)
                    out["float"] += h0_bits(((v >> 7) & 0xFF).astype(np.uint8), 256) / 8 + v.size
                elif dt == "F16":
                    v = raw.view(np.uint16)
                    out["float"] += h0_bits((v >> 8).astype(np.uint8), 256) / 8 + v.size
                elif dt == "F32":
                    v = raw.view(np.uint32)
                    out["float"] += h0_bits(((v >> 23) & 0xFF).astype(np.uint8), 256) / 8 + 3 * v.size
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
