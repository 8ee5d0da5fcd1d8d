#!/usr/bin/env python3
"""Turns `fp4z sweep` output (sweep.json) into the markdown table and the issue-11 "Done when" verdicts.

usage: scripts/rd_sweep_table.py SWEEP_DIR/sweep.json > docs/rd-sweep.md-part
Interpolation along the rd curve is linear in bits/weight and in log(KL) (or log(MSE)) between measured points;
no extrapolation (a figure outside the measured rd range is reported as such)."""
import json
import math
import sys


def interp(points, x, key):
    """y at bits x on the curve through points (sorted by bits); None outside the range."""
    pts = sorted(points, key=lambda p: p["ideal_bits"])
    for a, b in zip(pts, pts[1:]):
        if a["ideal_bits"] <= x <= b["ideal_bits"]:
            f = (x - a["ideal_bits"]) / (b["ideal_bits"] - a["ideal_bits"])
            return math.exp(math.log(a[key]) + f * (math.log(b[key]) - math.log(a[key])))
    return None


def bits_at(points, y, key):
    """Smallest bits on the curve where value == y (value falls with bits); None outside."""
    pts = sorted(points, key=lambda p: p["ideal_bits"])
    for a, b in zip(pts, pts[1:]):
        if (a[key] - y) * (b[key] - y) <= 0 and a[key] != b[key]:
            f = (math.log(y) - math.log(a[key])) / (math.log(b[key]) - math.log(a[key]))
            return a["ideal_bits"] + f * (b["ideal_bits"] - a["ideal_bits"])
    return None


def main():
    j = json.load(open(sys.argv[1]))
    pts = j["points"]
    ser = lambda s: [p for p in pts if p["series"] == s]
    absmax = ser("absmax")[0]
    seed = {p["param"]: p for p in ser("seed")}
    rd, nocal = ser("rd"), ser("rd-nocal")
    print(f"Source `{j['source'].split('/')[-1]}`, calibration `{j['calibration'].split('/')[-1]}`, "
          f"evaluation `{j['eval_text'].split('/')[-1]}` ({j['eval_tokens']} tokens, ctx {j['ctx']}); "
          f"bits/weight = {j['bits_per_weight']}.\n")
    print("| point | bits/weight (ideal) | bits/weight (fp4z-coded) | weight MSE | PPL | KL mean | KL p99 | top-1 | λ |")
    print("|---|---|---|---|---|---|---|---|---|")
    for p in pts:
        lam = f"{p['lambda']:.3g}" if p["lambda"] >= 0 else ""
        print(f"| {p['label']} | {p['ideal_bits']:.4f} | {p['coded_bits']:.4f} | {p['weight_mse']:.4e} | {p['ppl']:.4f} | "
              f"{p['kl_mean']:.4f} | {p['kl_p99']:.4f} | {p['top1']:.4f} | {lam} |")
    print("\n**Done when (issue 11)**, measured in this sweep:\n")
    a2 = seed.get(2.0)
    ok = lambda c: "**met**" if c else "**not met**"
    if a2 and rd:
        below = [p for p in rd if p["ideal_bits"] <= a2["ideal_bits"]]
        if below:
            best = max(below, key=lambda p: p["ideal_bits"])
            r = best["kl_mean"] / absmax["kl_mean"]
            print(f"- (a) rd at ≤ alpha 2's rate ({a2['ideal_bits']:.4f}): {best['label']} at {best['ideal_bits']:.4f} bits has KL "
                  f"{best['kl_mean']:.4f} = {r:.3f} × absmax's {absmax['kl_mean']:.4f} (target ≤ 0.75): {ok(r <= 0.75)}")
        b = bits_at(rd, a2["kl_mean"], "kl_mean")
        if b is None:
            print(f"- (b) alpha 2's KL {a2['kl_mean']:.4f} lies outside the measured rd curve")
        else:
            r = b / a2["ideal_bits"]
            print(f"- (b) rd reaches alpha 2's KL {a2['kl_mean']:.4f} at {b:.4f} bits = {100 * r:.1f}% of alpha 2's "
                  f"{a2['ideal_bits']:.4f} (target ≤ 88%): {ok(r <= 0.88)}")
    below = [p for p in rd if p["ideal_bits"] <= absmax["ideal_bits"]]
    if below:
        best = max(below, key=lambda p: p["ideal_bits"])
        r = best["kl_mean"] / absmax["kl_mean"]
        print(f"- (c) rd at ≤ absmax's rate ({absmax['ideal_bits']:.4f}): {best['label']} at {best['ideal_bits']:.4f} bits has KL "
              f"{best['kl_mean']:.4f} = {r:.3f} × absmax's (target ≤ 0.6): {ok(r <= 0.6)}")
    for a, p in sorted(seed.items()):
        k = interp(rd, p["ideal_bits"], "kl_mean")
        m = interp(nocal, p["ideal_bits"], "weight_mse")
        ks = "outside the rd range" if k is None else f"rd KL {k:.4f} vs {p['kl_mean']:.4f}: {ok(k < p['kl_mean'])}"
        ms = "outside the range" if m is None else f"rd without calibration MSE {m:.4e} vs {p['weight_mse']:.4e}: {ok(m < p['weight_mse'])}"
        print(f"- (d) alpha {a:g} at {p['ideal_bits']:.4f} bits: {ks}; {ms}")


if __name__ == "__main__":
    main()
