# Times whole `fp4z quantize` processes of two binaries, alternating: wall, user, sys, peak RSS.
"""usage: quantize_io.py [--rounds N] [--cold] [--threads T] [--keep] WORK_DIR JOB BINARY...

JOB is one of
  seed-layer:SRC   `quantize --method seed` of a one-layer checkpoint (bench/gen_one_layer.py),
                   template = SRC's absmax output made once by the first binary
  absmax:SRC       `quantize --method absmax` (e.g. a bench/gen_full_qwen3_4b.sh checkpoint)
  seed:SRC         `quantize --method seed --alpha 2` with SRC's absmax output as the template

Every round runs each binary once, in turn (the order alternates between rounds), into a fresh
output directory (removed before the run, outside the timing: no --force). Times come from
wait4(2) (microseconds) and the wall clock around fork/exec; the median of the rounds is printed
with the input's BF16 bytes per second. --cold evicts the job's input files (source and template)
from the page cache before every run (posix_fadvise DONTNEED after a sync: no root needed, other
files stay cached); without it the input is whatever the page cache holds, which after the first
round is normally all of it (hot). Outputs of all binaries are compared byte for byte
(except the seed report's output_dir line).
"""
import argparse
import filecmp
import os
import shutil
import statistics
import subprocess
import sys
import time


def run_timed(argv):
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    _, status, ru = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"{' '.join(argv)}: exit {code}")
    return {"wall": wall, "user": ru.ru_utime, "sys": ru.ru_stime, "rss_mb": ru.ru_maxrss / 1024.0}


def evict(dirs):
    """Drops the clean page-cache pages of every file under `dirs` (they must not be dirty: sync)."""
    subprocess.run(["sync"], check=True)
    for d in dirs:
        for root, _, files in os.walk(d):
            for fn in files:
                fd = os.open(os.path.join(root, fn), os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)


def tensor_bytes(src, method):
    """BF16/F16/F32 bytes the job reads: every tensor (absmax) or the weights seed re-encodes."""
    import json
    import struct
    total = 0
    for fn in sorted(os.listdir(src)):
        if not fn.endswith(".safetensors"):
            continue
        with open(os.path.join(src, fn), "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            hdr = json.loads(f.read(n))
        for name, t in hdr.items():
            if name == "__metadata__":
                continue
            if method == "seed" and not (name.endswith("proj.weight")):
                continue
            a, b = t["data_offsets"]
            total += b - a
    return total


def same_tree(a, b):
    cmp = filecmp.dircmp(a, b)
    diffs = [f for f in cmp.diff_files if not f.endswith("full_precision_export.json")]
    return not (diffs or cmp.left_only or cmp.right_only)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cold", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the outputs")
    ap.add_argument("work")
    ap.add_argument("job")
    ap.add_argument("binaries", nargs="+")
    a = ap.parse_args()
    kind, src = a.job.split(":", 1)
    os.makedirs(a.work, exist_ok=True)
    bins = [os.path.abspath(b) for b in a.binaries]
    template = os.path.join(a.work, "template")
    if kind.startswith("seed") and not os.path.isdir(template):
        run_timed([bins[0], "quantize", "--source", src, "--out", template, "-q", "--threads", str(a.threads)])
    method = "absmax" if kind == "absmax" else "seed"
    nbytes = tensor_bytes(src, method)
    results = {b: [] for b in bins}
    outs = {b: os.path.join(a.work, f"out{i}") for i, b in enumerate(bins)}
    for rnd in range(a.rounds):
        order = bins if rnd % 2 == 0 else list(reversed(bins))
        for b in order:
            shutil.rmtree(outs[b], ignore_errors=True)
            argv = [b, "quantize", "--source", src, "--out", outs[b], "-q", "--threads", str(a.threads)]
            if method == "seed":
                argv += ["--method", "seed", "--template", template, "--alpha", "2"]
            if a.cold:
                evict([src] + ([template] if method == "seed" else []))
            r = run_timed(argv)
            results[b].append(r)
            print(f"round {rnd + 1} {b}: wall {r['wall']:.3f} s  user {r['user']:.3f} s  sys {r['sys']:.3f} s  "
                  f"RSS {r['rss_mb']:.0f} MB", flush=True)
    print(f"\n{kind} of {src} ({nbytes / 1e9:.3f} GB of weights), {a.threads} threads, "
          f"{'cold (inputs evicted from the page cache before each run)' if a.cold else 'page cache not dropped'}, "
          f"median of {a.rounds}:")
    for b in bins:
        med = {k: statistics.median(r[k] for r in results[b]) for k in ("wall", "user", "sys", "rss_mb")}
        print(f"  {b}: wall {med['wall']:.3f} s ({nbytes / med['wall'] / 1e9:.2f} GB/s)  user {med['user']:.3f} s  "
              f"sys {med['sys']:.3f} s  user+sys {med['user'] + med['sys']:.3f} s  peak RSS {med['rss_mb']:.0f} MB")
    for b in bins[1:]:
        print(f"  output of {b} {'identical to' if same_tree(outs[bins[0]], outs[b]) else 'DIFFERS from'} {bins[0]}'s")
    if not a.keep:
        for b in bins:
            shutil.rmtree(outs[b], ignore_errors=True)


if __name__ == "__main__":
    main()
