# Builds tiny hand-made checkpoints holding the golden vectors of nvfp4-format.md §2.5 and seed-method.md §3/§10.
"""usage: make_golden.py absmax OUT
          make_golden.py seed SRC_OUT TEMPLATE_OUT

Only inputs are made here; the expected output bytes are written by hand in tests/quantize_test.cpp.

absmax (BF16 source, tied embedding, no lm_head.weight):
  layers.0.mlp.down_proj      [2,32]  row0 = [1.5, 0.3, -0.7, 0...| 16 zeros], row1 = [3.0, 0...| zeros]
  layers.0.self_attn.o_proj   [2,16]  row0 = [-0.5,-6,-0.5,-1.5,-1,6,0,-0.1, 0...], row1 = [0,.5,1,1.5,-.1,-.5,-1,-6, 0...]
  layers.1.mlp.down_proj      [2,16]  row0 = E2M1 ties at S = 0.25, row1 = [3.0, 0...]
  layers.0.self_attn.q/k/v    [16,16] row0 starts with 3.0 / 0.75 / 1.5, everything else 0 (one fused group)
  layers.1.self_attn.o_proj   [16,24] K % 16 != 0 -> stays BF16, listed in ignore
seed: template prefixes with hand-picked FP8 scales and global scales (see SEED_CASES), source weights
  chosen so that the codes are known by hand.
"""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io as st  # noqa: E402
import nvfp4_ref as ref  # noqa: E402


def bf16(values, shape):
    a = np.zeros(int(np.prod(shape)), dtype=np.float32)
    v = np.asarray(values, dtype=np.float32).reshape(-1)
    a[: v.size] = v
    return ref.f32_to_bf16_bits(a.reshape(shape))


def write_config(d, hidden=16, inter=32, layers=2, heads=1, kv=1, head_dim=16, vocab=8):
    os.makedirs(d, exist_ok=True)
    cfg = {"architectures": ["Qwen3ForCausalLM"], "head_dim": head_dim, "hidden_act": "silu",
           "hidden_size": hidden, "intermediate_size": inter, "model_type": "qwen3",
           "num_attention_heads": heads, "num_hidden_layers": layers, "num_key_value_heads": kv,
           "rms_norm_eps": 1e-06, "rope_theta": 1000000, "tie_word_embeddings": True,
           "torch_dtype": "bfloat16", "vocab_size": vocab}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(d, "generation_config.json"), "w") as f:
        f.write('{"bos_token_id": 1, "eos_token_id": 2}')


def make_absmax(out):
    write_config(out)
    rng = np.random.default_rng(5)
    z = np.zeros
    ties = [1.5, 0.0625, 0.1875, 0.3125, 0.4375, 0.625, 0.875, 1.25,
            -0.0625, -0.1875, -0.3125, -0.4375, -0.625, -0.875, -1.25, -1.5]
    t = [
        ("model.embed_tokens.weight", bf16(rng.standard_normal(128) * 0.02, (8, 16))),
        ("model.layers.0.input_layernorm.weight", bf16(np.ones(16), (16,))),
        ("model.layers.0.mlp.down_proj.weight", bf16([1.5, 0.3, -0.7] + [0] * 29 + [3.0], (2, 32))),
        ("model.layers.0.self_attn.o_proj.weight",
         bf16([-0.5, -6, -0.5, -1.5, -1, 6, 0, -0.1] + [0] * 8 + [0, .5, 1, 1.5, -.1, -.5, -1, -6], (2, 16))),
        ("model.layers.0.self_attn.q_proj.weight", bf16([3.0], (16, 16))),
        ("model.layers.0.self_attn.k_proj.weight", bf16([0.75], (16, 16))),
        ("model.layers.0.self_attn.v_proj.weight", bf16([1.5], (16, 16))),
        ("model.layers.1.mlp.down_proj.weight", bf16(ties + [3.0], (2, 16))),
        ("model.layers.1.self_attn.o_proj.weight", bf16(rng.standard_normal(16 * 24) * 0.1, (16, 24))),
        ("model.norm.weight", bf16(np.ones(16), (16,))),
    ]
    del z
    st.write_file(os.path.join(out, st.SINGLE_NAME), [(n, "BF16", a) for n, a in t])


# (prefix, shape, template scale bytes, template global scale, source row values)
SEED_CASES = [
    # §10: effective scales [0.125,0.25,0.5,1]*alpha 2 -> M=2, g1=224, bytes 66 6E 76 7E kept
    ("model.layers.0.mlp.down_proj", (1, 64), [0x66, 0x6E, 0x76, 0x7E], 448.0,
     [0, .125, .25, .375, .5, .75, 1, 1.5, -0.0, -.125, -.25, -.375, -.5, -.75, -1, -1.5] + [0] * 32 + [-0.1, 0.1]),
    # §3 table
    ("model.layers.0.mlp.up_proj", (1, 16), [0x79], 5056.0, [0.01, -0.02]),
    ("model.layers.1.mlp.gate_proj", (1, 16), [0x7E], 6816.0, [0.01, -0.02]),
    ("model.layers.2.mlp.down_proj", (1, 16), [0x7E], 4640.0, [0.01, -0.02]),
    ("model.layers.0.self_attn.q_proj", (1, 16), [0x7E], 4544.0, [0.01, -0.02]),
    ("model.layers.0.self_attn.k_proj", (1, 16), [0x75], 4544.0, [0.01, -0.02]),
    ("model.layers.0.self_attn.v_proj", (1, 16), [0x70], 4544.0, [0.01, -0.02]),
    # §3 step 4 / §3.1: all template scales zero -> M = 0, F1 = 0, g1 = 1, X = +-inf / NaN
    ("model.layers.3.mlp.down_proj", (1, 32), [0x00, 0x00], 1.0, [1.0, -1.0, 0.0, -0.0]),
]


def make_seed(src_out, tpl_out):
    write_config(src_out, layers=4)
    write_config(tpl_out, layers=4)
    with open(os.path.join(tpl_out, "config.json")) as f:
        cfg = json.load(f)
    cfg["quantization_config"] = {"quant_method": "compressed-tensors", "format": "nvfp4-pack-quantized",
                                  "note": "hand-made golden template"}
    with open(os.path.join(tpl_out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    rng = np.random.default_rng(11)
    src, tpl = [], []
    emb = bf16(rng.standard_normal(128) * 0.02, (8, 16))
    src.append(("model.embed_tokens.weight", "BF16", emb))
    tpl.append(("model.embed_tokens.weight", "BF16", emb))
    for prefix, shape, scales, gt, row in sorted(SEED_CASES):
        src.append((prefix + ".weight", "BF16", bf16(row, shape)))
        packed = rng.integers(0, 256, (shape[0], shape[1] // 2), dtype=np.uint8)
        tpl.append((prefix + ".weight_packed", "U8", packed))
        tpl.append((prefix + ".weight_scale", "F8_E4M3", np.array(scales, dtype=np.uint8).reshape(shape[0], -1)))
        tpl.append((prefix + ".weight_global_scale", "F32", np.array([gt], dtype=np.float32)))
        tpl.append((prefix + ".input_global_scale", "F32", np.array([1234.0], dtype=np.float32)))
    st.write_file(os.path.join(src_out, st.SINGLE_NAME), src)
    st.write_file(os.path.join(tpl_out, st.SINGLE_NAME), tpl, {"format": "pt", "producer": "golden-template"})


def main():
    if sys.argv[1] == "absmax":
        make_absmax(sys.argv[2])
    elif sys.argv[1] == "seed":
        make_seed(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
