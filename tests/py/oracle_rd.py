#!/usr/bin/env python3
"""Independent numpy oracle of fp4z's rate-distortion NVFP4 decisions (docs/quantize.md, "--method rd").

Written from the documented rules, not from the C++ code. Every quantity is an IEEE f32 (numpy float32
scalars; fl() below is one f32 rounding):
  * block scale: b0 = max(1, enc(min(fl(fl(amax/6)*gs), 448))); every FP8 byte from b0 - below to b0 + above,
    clipped to 1..0x7E, is tried in ascending order, skipping bytes whose S = fl(dec(byte)/gs) or R = fl(1/S)
    is not finite and > 0; the block total is fl(fl(lam*scale_cost) + tree(c_0..c_15)) with c_j the weight's
    best code cost and tree() the pairwise sum (j + 8, then + 4, + 2, + 1 apart); the first candidate, then
    any with a strictly lower total, wins; an all-zero block takes the cheapest byte of 1..0x7E;
  * code: a = fl(|w|*R), lo = the number of nonzero E2M1 magnitudes <= a; among magnitudes lo-1, lo, lo+1
    (clipped to 0..7, in that order) the one minimising c = fl(fl(wt*fl(e*e)) + fl(lam*cost[code])),
    e = fl(|w| - fl(m*S)), the first on ties; sign from w < 0, zero is +0;
  * GPTQ order (with U, the upper Cholesky factor of the damped inverse H): the block scale is chosen from
    the current weights when the block starts, with wt_j = 1/U_jj^2; after each column,
    err = (w - q)/U_jj is subtracted times U[j, j+1:] from the row's later columns, all in f32.

Usage: oracle_rd.py DIR  -- reads DIR/params.json, W.f32 [N,K], costs_code.f32 [16], costs_scale.f32 [256],
optionally H.f64 [K,K]; writes DIR/oracle_scales.u8 [N,K/16], DIR/oracle_codes.u8 [N,K] and, with H,
DIR/oracle_U.f32 [K,K] (numpy's Cholesky of the damped inverse, for comparison within tolerance).
"""
import json
import sys

import numpy as np

np.seterr(all="ignore")  # inf/overflow are part of the rule (unusable scales, huge errors)

f32 = np.float32
MAG = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]


def e4m3_value(b):
    e, m = (b >> 3) & 15, b & 7
    v = m / 512.0 if e == 0 else (1 + m / 8.0) * 2.0 ** (e - 7)
    return -v if b & 0x80 else v


DEC = [e4m3_value(b) for b in range(256)]


def e4m3_encode(x):
    """Nearest of bytes 0..0x7E to x >= 0 (ties to the even byte = even mantissa), above 448 -> 0x7E."""
    x = float(x)
    if x >= 448:
        return 0x7E
    best, bd = 0, None
    for b in range(0x7F):
        d = abs(DEC[b] - x)
        if bd is None or d < bd or (d == bd and b % 2 == 0 and best % 2 == 1):
            best, bd = b, d
    return best


def code_cost(w, S, R, wt, lam, cc):
    """(cost, code) of the best code for weight w with divisor S and reciprocal R."""
    x = abs(f32(w))
    a = f32(x * R)
    lo = sum(1 for m in range(1, 8) if MAG[m] <= a)
    best, bc = None, None
    for m in (max(0, lo - 1), lo, min(7, lo + 1)):
        code = 0 if m == 0 else (m | (8 if w < 0 else 0))
        e = f32(x - f32(f32(MAG[m]) * S))
        c = f32(f32(wt * f32(e * e)) + f32(lam * cc[code]))
        if bc is None or c < bc:
            best, bc = code, c
    return bc, best


def choose_code(w, S, wt, lam, cc):
    return code_cost(w, S, f32(f32(1) / S), f32(wt), lam, cc)[1]


def tree16(c):
    v = np.array(c, dtype=np.float32)
    for h in (8, 4, 2, 1):
        v = (v[:h] + v[h:2 * h]).astype(np.float32)
    return f32(v[0])


def value(code):
    v = MAG[code & 7]
    return -v if code & 8 else v


def choose_block(w, wt, gs, lam, cc, cs, below, above):
    amax = max(abs(float(x)) for x in w)
    if amax == 0:
        b = min(range(1, 0x7F), key=lambda i: (cs[i], i))
        return b, [0] * 16
    b0 = max(1, e4m3_encode(min(f32(f32(f32(amax) / f32(6)) * f32(gs)), f32(448))))
    best, bt, bcodes = b0, None, [0] * 16
    for b in range(max(1, b0 - below), min(0x7E, b0 + above) + 1):
        S = f32(f32(DEC[b]) / f32(gs))
        R = f32(f32(1) / S) if S > 0 else f32(np.inf)
        if not (S > 0 and np.isfinite(S) and np.isfinite(R)):
            continue
        cost_codes = [code_cost(w[j], S, R, f32(wt[j]), lam, cc) for j in range(16)]
        total = f32(f32(lam * cs[b]) + tree16([c for c, _ in cost_codes]))
        if bt is None or total < bt:
            best, bt, bcodes = b, total, [k for _, k in cost_codes]
    return best, bcodes


def main():
    d = sys.argv[1]
    p = json.load(open(d + "/params.json"))
    N, K = p["N"], p["K"]
    gs, lam = f32(p["gs"]), f32(p["lambda"])
    W = np.fromfile(d + "/W.f32", dtype=np.float32).reshape(N, K)
    cc = np.fromfile(d + "/costs_code.f32", dtype=np.float32)
    cs = np.fromfile(d + "/costs_scale.f32", dtype=np.float32)
    scales = np.zeros((N, K // 16), np.uint8)
    codes = np.zeros((N, K), np.uint8)
    if p.get("gptq"):
        H = np.fromfile(d + "/H.f64", dtype=np.float64).reshape(K, K).copy()
        diag = np.diag(H).copy()
        diag[diag == 0] = 1
        np.fill_diagonal(H, diag + p["damp"] * np.mean(np.diag(H)))
        U = np.linalg.cholesky(np.linalg.inv(H)).T.astype(np.float32)
        U.tofile(d + "/oracle_U.f32")
        # The comparison of decisions uses the engine's own U (so that both see the same factor).
        Ue = np.fromfile(d + "/U.f32", dtype=np.float32).reshape(K, K)
        wt = [f32(f32(1) / f32(Ue[j, j] * Ue[j, j])) for j in range(K)]
        for r in range(N):
            w = W[r].astype(np.float32).copy()
            S = None
            for j in range(K):
                if j % 16 == 0:
                    b, _ = choose_block(w[j:j + 16], wt[j:j + 16], gs, lam, cc, cs, p["below"], p["above"])
                    scales[r, j // 16] = b
                    S = f32(f32(DEC[b]) / gs)
                c = choose_code(w[j], S, wt[j], lam, cc)
                codes[r, j] = c
                q = f32(f32(value(c)) * S)
                e = f32(f32(w[j] - q) / Ue[j, j])
                w[j + 1:] = (w[j + 1:] - (e * Ue[j, j + 1:]).astype(np.float32)).astype(np.float32)
    else:
        ones = [f32(1)] * 16
        for r in range(N):
            for blk in range(K // 16):
                b, cds = choose_block(W[r, 16 * blk:16 * blk + 16], ones, gs, lam, cc, cs, p["below"], p["above"])
                scales[r, blk] = b
                codes[r, 16 * blk:16 * blk + 16] = cds
    scales.tofile(d + "/oracle_scales.u8")
    codes.tofile(d + "/oracle_codes.u8")


if __name__ == "__main__":
    main()
