# Compares fp4z's seed report JSON with the oracle's, field by field (numbers within a relative tolerance).
"""usage: compare_report.py EXPECTED.json ACTUAL.json [--rel 1e-6] [--abs 0] [--max-report 40]

Numbers: |a - e| <= max(rel * |e|, abs). NaN matches only NaN and +-inf only the same infinity
(a JSON null where the oracle has NaN/inf is reported). Integers must be equal; key sets must match;
key order differences are reported separately as ORDER lines (not failures: textual identity is not
required). Exit 0 when equal, 1 otherwise.
"""
import argparse
import json
import math
import sys


def load(path):
    with open(path) as f:
        text = f.read()
    return json.loads(text), text


def cmp(path, e, a, rel, abs_, errors, order_notes):
    if isinstance(e, dict):
        if not isinstance(a, dict):
            errors.append(f"{path}: expected object, got {json.dumps(a)[:80]}")
            return
        if set(e) != set(a):
            errors.append(f"{path}: keys differ: missing {sorted(set(e) - set(a))}, extra {sorted(set(a) - set(e))}")
        elif list(e) != list(a):
            order_notes.append(f"{path}: key order {list(a)} (expected {list(e)})")
        for k in e:
            if k in a:
                cmp(f"{path}.{k}", e[k], a[k], rel, abs_, errors, order_notes)
    elif isinstance(e, list):
        if not isinstance(a, list) or len(a) != len(e):
            errors.append(f"{path}: expected list of {len(e)}, got {json.dumps(a)[:80]}")
            return
        for i, (x, y) in enumerate(zip(e, a)):
            name = f"{path}[{i}]"
            if isinstance(x, dict) and "layer" in x:
                name = f"{path}[{x['layer']}]"
            cmp(name, x, y, rel, abs_, errors, order_notes)
    elif isinstance(e, bool) or e is None or isinstance(e, str):
        if e != a or type(e) != type(a):  # noqa: E721
            errors.append(f"{path}: expected {json.dumps(e)} got {json.dumps(a)}")
    elif isinstance(e, int) and not isinstance(e, bool):
        if not isinstance(a, (int, float)) or isinstance(a, bool) or a != e:
            errors.append(f"{path}: expected {e} got {json.dumps(a)}")
    elif isinstance(e, float):
        if not isinstance(a, (int, float)) or isinstance(a, bool):
            errors.append(f"{path}: expected {e!r} got {json.dumps(a)}")
            return
        a = float(a)
        if math.isnan(e) or math.isinf(e):
            if not ((math.isnan(e) and math.isnan(a)) or e == a):
                errors.append(f"{path}: expected {e!r} got {a!r}")
            return
        if not (abs(a - e) <= max(rel * abs(e), abs_)):
            r = abs(a - e) / abs(e) if e != 0 else float("inf")
            errors.append(f"{path}: expected {e!r} got {a!r} (rel diff {r:.3g})")
    else:
        errors.append(f"{path}: unhandled {e!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("expected")
    ap.add_argument("actual")
    ap.add_argument("--rel", type=float, default=1e-6)
    ap.add_argument("--abs", type=float, default=0.0)
    ap.add_argument("--max-report", type=int, default=40)
    args = ap.parse_args()
    e, _ = load(args.expected)
    try:
        a, text = load(args.actual)
    except Exception as ex:  # noqa: BLE001
        print(f"MISMATCH cannot read {args.actual}: {ex}")
        return 1
    errors, order_notes = [], []
    cmp("report", e, a, args.rel, args.abs, errors, order_notes)
    if text.endswith("\n"):
        order_notes.append("report ends with a newline (the reference writes none)")
    for n in order_notes[:5]:
        print("ORDER " + n)
    for x in errors[: args.max_report]:
        print("MISMATCH " + x)
    if len(errors) > args.max_report:
        print(f"MISMATCH ... {len(errors) - args.max_report} more")
    if not errors:
        print("OK: report matches")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
