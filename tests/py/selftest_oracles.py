# Self-test of the quantize oracles against the design notes' golden values (no fp4z involved).
"""usage: selftest_oracles.py WORK_DIR

1. nvfp4_ref: every FP8/E2M1/BF16/packing golden of nvfp4-format.md and seed-method.md §3.2/§10.
2. oracle_absmax on the hand-made golden checkpoint: the §2.5 bytes.
3. oracle_seed on the hand-made golden template: the §3 global-scale table and §10 bytes.
4. oracle_seed at alpha 2 on an oracle_absmax template of a generated checkpoint: owner layers keep the
   template FP8 bytes and a block ratio of 2 within 1 ulp (§4, §10); fused mode shares g per group.
Exit 0 when all pass.
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import nvfp4_ref as ref  # noqa: E402
import safetensors_io as st  # noqa: E402

PY = sys.executable
failures = []


def run(*args):
    r = subprocess.run([PY] + [os.path.join(HERE, args[0])] + list(args[1:]), capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{args}: exit {r.returncode}\n{r.stdout}{r.stderr}")
    return r.stdout


def expect_hex(d, tensor, want):
    got = bytes(st.Checkpoint(d).raw_bytes(tensor)).hex()
    if not got.startswith(want):
        failures.append(f"{d}: {tensor}: expected {want}, got {got}")


def main():
    work = sys.argv[1]
    os.makedirs(work, exist_ok=True)
    ref.self_test()

    ga, gao = os.path.join(work, "ga"), os.path.join(work, "gao")
    run("make_golden.py", "absmax", ga)
    run("oracle_absmax.py", ga, gao)
    expect_hex(gao, "model.layers.0.mlp.down_proj.weight_global_scale", "00006044")
    expect_hex(gao, "model.layers.0.mlp.down_proj.weight_scale", "76207e20")
    expect_hex(gao, "model.layers.0.mlp.down_proj.weight_packed", "270d" + "00" * 14 + "07")
    expect_hex(gao, "model.layers.0.self_attn.o_proj.weight_global_scale", "0000e043")
    expect_hex(gao, "model.layers.0.self_attn.o_proj.weight_packed", "f9b97a8000000000103298fa00000000")
    expect_hex(gao, "model.layers.1.mlp.down_proj.weight_packed", "07224466a8caecfe0700000000000000")
    for m in ("q_proj", "k_proj", "v_proj"):
        expect_hex(gao, f"model.layers.0.self_attn.{m}.weight_global_scale", "00006044")
    gac = os.path.join(work, "gac")
    run("oracle_absmax.py", ga, gac, "--canonical-zero")
    expect_hex(gac, "model.layers.0.self_attn.o_proj.weight_packed", "f9b97a0000000000103290fa00000000")

    gs, gt, gso, gsf = (os.path.join(work, x) for x in ("gs", "gt", "gso", "gsf"))
    run("make_golden.py", "seed", gs, gt)
    run("oracle_seed.py", gs, gt, gso)
    run("oracle_seed.py", gs, gt, gsf, "--fused-global-scale")
    L = "model.layers."
    expect_hex(gso, L + "0.mlp.down_proj.weight_global_scale", "00006043")
    expect_hex(gso, L + "0.mlp.down_proj.weight_scale", "666e767e")
    expect_hex(gso, L + "0.mlp.down_proj.weight_packed", "1032547690badcfe" + "00" * 16 + "08")
    for p, g in (("0.mlp.up_proj", "1cc77545"), ("1.mlp.gate_proj", "01005545"), ("2.mlp.down_proj", "00001145"),
                 ("0.self_attn.q_proj", "00000e45"), ("0.self_attn.k_proj", "4fec9845"),
                 ("0.self_attn.v_proj", "0080f845"), ("3.mlp.down_proj", "0000803f")):
        expect_hex(gso, L + p + ".weight_global_scale", g)
    expect_hex(gso, L + "3.mlp.down_proj.weight_scale", "0000")
    expect_hex(gso, L + "3.mlp.down_proj.weight_packed", "f700")
    for m in ("q_proj", "k_proj", "v_proj"):
        expect_hex(gsf, L + f"0.self_attn.{m}.weight_global_scale", "00000e45")
    expect_hex(gsf, L + "0.self_attn.k_proj.weight_scale", "75")
    expect_hex(gsf, L + "0.self_attn.v_proj.weight_scale", "70")

    src, tpl, out, fout = (os.path.join(work, x) for x in ("src", "tpl", "out", "fout"))
    run("gen_checkpoint.py", src, "--scale", "16", "--layers", "2", "--seed", "1", "--no-tokenizer")
    run("oracle_absmax.py", src, tpl)
    run("oracle_seed.py", src, tpl, out)
    try:
        run("st_tool.py", "owner-check", tpl, out, "2.0")
    except SystemExit as e:
        failures.append(f"owner check: {e}")
    run("oracle_seed.py", src, tpl, fout, "--fused-global-scale")
    # fused mode at alpha 2 on a template with shared g_t: every member keeps its FP8 bytes (§9.1)
    t, f = st.Checkpoint(tpl), st.Checkpoint(fout)
    for n in t.names:
        if n.endswith(".weight_scale") and bytes(t.raw_bytes(n)) != bytes(f.raw_bytes(n)):
            failures.append(f"fused alpha 2: {n} FP8 bytes changed")
    for x in failures:
        print("FAIL " + x)
    print("oracle self-test: " + ("OK" if not failures else f"{len(failures)} failures"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
