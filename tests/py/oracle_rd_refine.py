#!/usr/bin/env python3
"""Independent numpy oracle of fp4z rd's calibrated refinements (docs/quantize.md, "--method rd").

Written from the documented rules, not from the C++ code:
  * input correction: the target weight is argmin_Q E||W x - Q x~||^2 over unquantized Q, i.e. the solution
    of Q (H~ + d I) = W (C - H~) + W (H~ + d I)  with C = E[x x~^T], H~ = E[x~ x~^T] and the feedback pass's
    damping d = damp * mean(diag H~) (dead columns, H~_jj = 0, get 1 added first);
  * code refinement: with the block scales fixed and H_d = the damped H~, repeat sweeps over the columns
    j = 0..K-1 of each row; at column j take, among all codes except 8 (-0), the one that lowers
    (dw^T H_d dw + lam * sum of code costs) the most (the lowest code among equal changes; no change unless
    it lowers the objective); stop after `sweeps` sweeps or a sweep without a change.

Usage: oracle_rd_refine.py DIR  -- reads DIR/params.json {N, K, gs, lambda, damp, sweeps},
W.f32 [N,K], C.f64 [K,K], H.f64 [K,K], codes.u8 [N,K] (start codes), scales.u8 [N,K/16], costs_code.f32 [16];
writes DIR/oracle_target.f32 [N,K] (the corrected weight) and DIR/oracle_refined.u8 [N,K] (refined codes of
the start codes, against the target in T.f32).
"""
import json
import sys

import numpy as np

from oracle_rd import e4m3_value, value  # the same FP8/E2M1 tables as the decisions oracle

def damped(H, damp):
    Hd = H.copy()
    diag = np.diag(H).copy()
    mean = diag.mean() if diag.mean() > 0 else 1.0
    np.fill_diagonal(Hd, diag + (diag == 0) + damp * mean)
    return Hd


def main():
    d = sys.argv[1]
    p = json.load(open(d + "/params.json"))
    N, K = p["N"], p["K"]
    W = np.fromfile(d + "/W.f32", dtype=np.float32).reshape(N, K).astype(np.float64)
    C = np.fromfile(d + "/C.f64", dtype=np.float64).reshape(K, K)
    H = np.fromfile(d + "/H.f64", dtype=np.float64).reshape(K, K)
    Hd = damped(H, p["damp"])
    target = np.linalg.solve(Hd, (W @ (C - H) + W @ Hd).T).T  # Q Hd = W (C - H) + W Hd, Hd symmetric
    target.astype(np.float32).tofile(d + "/oracle_target.f32")

    T = np.fromfile(d + "/T.f32", dtype=np.float32).reshape(N, K).astype(np.float64)
    codes = np.fromfile(d + "/codes.u8", dtype=np.uint8).reshape(N, K).copy()
    scales = np.fromfile(d + "/scales.u8", dtype=np.uint8).reshape(N, K // 16)
    cc = np.fromfile(d + "/costs_code.f32", dtype=np.float32).astype(np.float64)
    gs, lam = np.float32(p["gs"]), float(np.float32(p["lambda"]))
    for r in range(N):
        S = np.array([float(np.float32(e4m3_value(int(scales[r, j // 16])))) / float(gs) for j in range(K)])
        dw = np.array([value(int(codes[r, j])) for j in range(K)]) * S - T[r]
        for _ in range(p["sweeps"]):
            changed = False
            for j in range(K):
                c = int(codes[r, j])
                g = Hd[j] @ dw
                best, best_c = 0.0, -1
                for c2 in range(16):
                    if c2 == 8 or c2 == c:
                        continue
                    step = (value(c2) - value(c)) * S[j]
                    delta = 2 * step * g + step * step * Hd[j, j] + lam * (cc[c2] - cc[c])
                    if delta < best - 1e-18:
                        best, best_c = delta, c2
                if best_c >= 0:
                    dw[j] += (value(best_c) - value(c)) * S[j]
                    codes[r, j] = best_c
                    changed = True
            if not changed:
                break
    codes.tofile(d + "/oracle_refined.u8")


if __name__ == "__main__":
    main()
