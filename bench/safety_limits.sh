#!/usr/bin/env bash
# Issue 9 done-when numbers: CPU time of `fp4z check` on a 1,000,000-tensor safetensors header and
# peak RSS of `fp4z tokenize` on an 11 KB tokenizer.json naming id 2^27 (needs /usr/bin/time).
# usage: bash bench/safety_limits.sh [path/to/fp4z]
set -euo pipefail
fp4z=${1:-build/fp4z}
work=$(mktemp -d /tmp/fp4z-safety-bench-XXXXXX)
trap 'rm -rf "$work"' EXIT
python3 - "$work" <<'PY'
import json, os, struct, sys
work = sys.argv[1]
os.makedirs(work + "/ck"); os.makedirs(work + "/tok")
h = ("{" + ",".join('"t%d":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}' % i for i in range(1000000)) + "}").encode()
with open(work + "/ck/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h))); f.write(h)
vocab = {"w%d" % i: i for i in range(900)}; vocab["big"] = 1 << 27
json.dump({"version": "1.0", "added_tokens": [], "model": {"type": "BPE", "vocab": vocab, "merges": []}},
          open(work + "/tok/tokenizer.json", "w"))
PY
echo "check, 1,000,000 tensors (limit: 5 s):"
/usr/bin/time -f "  %e s wall, %U s user, %S s sys, %M KB peak RSS" "$fp4z" check "$work/ck" > /dev/null || true
echo "tokenize, vocab id 2^27 in $(stat -c %s "$work/tok/tokenizer.json") bytes (limit: 100 MB):"
/usr/bin/time -f "  %e s wall, %M KB peak RSS" "$fp4z" tokenize --model "$work/tok" hello 2>&1 | sed 's/^/  /' || true
