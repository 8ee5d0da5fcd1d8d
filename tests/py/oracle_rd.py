#!/usr/bin/env python3
"""Independent numpy oracle of fp4z's rate-distortion NVFP4 decisions (docs/quantize.md, "--method rd").

Written from the documented rules, not from the C++ code:
  * block scale: every FP8 byte from (absmax byte - below) to (absmax byte + above), clipped to 1..0x7E,
    is tried; S = f32(dec(byte) / gs); the byte minimising sum_j wt_j*err_j^2 + lam*(sum code costs +
    scale cost) wins (first on ties); an all-zero block takes the cheapest byte of 1..0x7E;
  * code: among the E2M1 magnitudes just below |w/S| (the largest <= it), one below that and one above,
    the one minimising wt*(|w| - m*S)^2 + lam*cost[code] (lowest code on ties); sign from w < 0, zero is +0;
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


def choose_code(w, S, wt, lam, cc):
    a = abs(f32(w) / f32(S))
    lo = max(i for i in range(8) if MAG[i] <= a)
    best, bc = 0, None
    for m in range(max(0, lo - 1), min(7, lo + 1) + 1):
        code = 0 if m == 0 else (m | (8 if w < 0 else 0))
        err = abs(float(w)) - MAG[m] * float(S)
        c = float(wt) * err * err + float(lam) * float(cc[code])
        if bc is None or c < bc:
            best, bc = code, c
    return best


def value(code):
    v = MAG[code & 7]
    return -v if code & 8 else v


def choose_block(w, wt, gs, lam, cc, cs, below, above):
    amax = max(abs(float(x)) for x in w)
    if amax == 0:
        b = min(range(1, 0x7F), key=lambda i: (cs[i], i))
        return b, [0] * 16
    b0 = max(1, e4m3_encode(min(f32(f32(f32(amax) / f32(6)) * f32(gs)), f32(448))))
    best, bc, bcodes = b0, None, None
    for b in range(max(1, b0 - below), min(0x7E, b0 + above) + 1):
        S = f32(f32(DEC[b]) / f32(gs))
        if not S > 0:
            continue
        c = float(lam) * float(cs[b])
        codes = []
        for j in range(16):
            code = choose_code(w[j], S, wt[j], lam, cc)
            codes.append(code)
            err = float(w[j]) - value(code) * float(S)
            c += float(wt[j]) * err * err + float(lam) * float(cc[code])
        if bc is None or c < bc:
            best, bc, bcodes = b, c, codes
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
