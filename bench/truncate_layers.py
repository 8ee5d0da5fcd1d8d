#!/usr/bin/env python3
"""Copies a Hugging Face safetensors checkpoint keeping only its first N decoder layers (for benchmarks on a subset)."""
import json
import os
import re
import shutil
import struct
import sys


def main():
    if len(sys.argv) != 4:
        print("usage: truncate_layers.py SRC_DIR OUT_DIR N", file=sys.stderr)
        sys.exit(2)
    src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.makedirs(out, exist_ok=False)
    keep = {}  # name -> (file, info)
    for f in sorted(os.listdir(src)):
        if not f.endswith(".safetensors"):
            if f != "model.safetensors.index.json" and os.path.isfile(os.path.join(src, f)):
                shutil.copy(os.path.join(src, f), out)
            continue
        with open(os.path.join(src, f), "rb") as fh:
            hlen = struct.unpack("<Q", fh.read(8))[0]
            header = json.loads(fh.read(hlen))
        header.pop("__metadata__", None)
        for name, info in header.items():
            m = re.search(r"layers\.(\d+)\.", name)
            if m is None or int(m.group(1)) < n:
                keep[name] = (os.path.join(src, f), 8 + hlen, info)
    new_header, offset = {}, 0
    for name, (_, _, info) in keep.items():
        size = info["data_offsets"][1] - info["data_offsets"][0]
        new_header[name] = {"dtype": info["dtype"], "shape": info["shape"], "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(new_header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(os.path.join(out, "model.safetensors"), "wb") as o:
        o.write(struct.pack("<Q", len(blob)) + blob)
        for name, (path, base, info) in keep.items():
            with open(path, "rb") as fh:
                fh.seek(base + info["data_offsets"][0])
                left = info["data_offsets"][1] - info["data_offsets"][0]
                while left:
                    chunk = fh.read(min(left, 64 << 20))
                    o.write(chunk)
                    left -= len(chunk)
    cfg_path = os.path.join(out, "config.json")
    cfg = json.load(open(cfg_path))
    cfg["num_hidden_layers"] = n
    if "max_window_layers" in cfg:
        cfg["max_window_layers"] = min(cfg["max_window_layers"], n)
    json.dump(cfg, open(cfg_path, "w"), indent=2)
    print(f"{out}: {len(keep)} tensors, {offset / 1e9:.2f} GB, {n} layers")


if __name__ == "__main__":
    main()
