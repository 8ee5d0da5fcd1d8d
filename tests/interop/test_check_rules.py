"""What `fp4z check` rejects, the real libraries reject or misread too (or the rule is documented as vLLM-only).

Each case mutates one thing in a clean fp4z absmax checkpoint (generated Qwen3, untied head, BF16), asserts that
`fp4z check --json` fails with the finding kind, and loads the file in transformers + compressed-tensors:
  rejected    loading or the forward pass raises
  complained  transformers reports missing / unexpected / mismatched keys
  misread     it loads silently but computes other logits than the clean file (the clean file read twice
              gives identical logits, so any difference is the mutation being applied) or non-finite ones
  same        it loads and computes exactly what the clean file computes
Three rules need another base file, each its own test below: k_not_multiple_of_16 (stories260K, K = 172),
no_quantized_linear (the dense source) and bad W4A4 input scales (a W4A4 file from tests/oracle_forward.py).
A rule that transformers does not enforce (it reads the file as written) is listed in READ_AS_WRITTEN with the
reason fp4z enforces it anyway: another loader (vLLM, which needs a GPU: not confirmed here) or a producer
defect that no loader can see. The list is in the README.
"""
import json
import shutil
import struct

import numpy as np
import pytest

from conftest import hf_load, hf_logits, kl_per_position, run_fp4z

LAYER = "model.layers.0.self_attn.k_proj"
IDS = [1, 17, 250, 3, 99, 42, 7, 300, 5, 128, 77, 200, 13, 400, 2, 64]

# Rules that transformers 5.17 + compressed-tensors 0.19 do not enforce, and why fp4z still does.
READ_AS_WRITTEN = {
    "fused_global_scale": "vLLM (not confirmed here) fuses q/k/v and gate/up into one matmul with one global scale, "
                          "the members' max, rescaling the other members; transformers keeps per-module scales",
    "negative_scale": "transformers applies the sign; vLLM's Marlin kernel (not confirmed here) assumes block scales >= 0",
    "zero_scale_nonzero_codes": "a producer defect: the codes of a zero-scale block are lost in every loader",
    "metadata": "transformers 4.x refused safetensors whose metadata format is not pt/tf/flax/mlx; 5.17 loads them",
    "fused_decision": "vLLM (not confirmed here) raises 'Found a different quantization schemes' for a fused q/k/v or "
                      "gate/up whose members differ; transformers runs each module on its own",
    "no_quantized_linear": "not a loader rule: the file is a dense model that every loader reads as one; fp4z check "
                           "was asked about an NVFP4 checkpoint and says it is none",
}


def read_raw(path):
    b = path.read_bytes()
    (n,) = struct.unpack("<Q", b[:8])
    header = json.loads(b[8:8 + n])
    meta = header.pop("__metadata__", None)
    tensors = {k: [v["dtype"], list(v["shape"]), b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]]
               for k, v in header.items()}
    return tensors, meta


def write_raw(path, tensors, meta):
    header, blobs, off = ({"__metadata__": meta} if meta is not None else {}), [], 0
    for name in sorted(tensors):
        dtype, shape, data = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
        blobs.append(data)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def f32(*values):
    return np.array(values, np.float32).tobytes()


def set_scale_byte(t, value):
    data = bytearray(t[2])
    data[0] = value
    t[2] = bytes(data)


# name -> (finding kind, mutation of (tensors, metadata, config) in place)
def m_missing_scale(t, meta, cfg): del t[LAYER + ".weight_scale"]
def m_extra_dense(t, meta, cfg): t[LAYER + ".weight"] = ["BF16", [256, 256], bytes(256 * 256 * 2)]
def m_scale_dtype(t, meta, cfg): t[LAYER + ".weight_scale"][0] = "U8"
def m_packed_shape(t, meta, cfg):
    d, s, b = t[LAYER + ".weight_packed"]
    t[LAYER + ".weight_packed"] = [d, [s[0] // 2, s[1] * 2], b]
def m_zero_global(t, meta, cfg): t[LAYER + ".weight_global_scale"][2] = f32(0.0)
def m_nan_global(t, meta, cfg): t[LAYER + ".weight_global_scale"][2] = f32(np.nan)
def m_nan_block(t, meta, cfg): set_scale_byte(t[LAYER + ".weight_scale"], 0x7F)
def m_negative_block(t, meta, cfg): t[LAYER + ".weight_scale"][2] = bytes(b | 0x80 for b in t[LAYER + ".weight_scale"][2])
def m_quant_method(t, meta, cfg): cfg["quantization_config"]["quant_method"] = "fp8"
def m_group_size(t, meta, cfg): cfg["quantization_config"]["config_groups"]["group_0"]["weights"]["group_size"] = 32
def m_strategy(t, meta, cfg): cfg["quantization_config"]["config_groups"]["group_0"]["weights"]["strategy"] = "channel"
def m_status(t, meta, cfg): cfg["quantization_config"]["quantization_status"] = "frozen"
def m_quantized_but_ignored(t, meta, cfg): cfg["quantization_config"]["ignore"].append(LAYER)
def m_dense_not_ignored(t, meta, cfg): cfg["quantization_config"]["ignore"].remove("lm_head")
def m_metadata(t, meta, cfg): meta["format"] = "np"
def m_scalar_global(t, meta, cfg): t[LAYER + ".weight_global_scale"][1] = []  # 0-d, same 4 bytes
def m_input_scale_w4a16(t, meta, cfg): t[LAYER + ".input_global_scale"] = ["F32", [1], f32(100.0)]
def m_fused_member_dense(t, meta, cfg):
    """k_proj stored dense (and ignored) with compressed-tensors' own decompression of its NVFP4 bytes, q/v stay NVFP4."""
    import torch
    from compressed_tensors.compressors.nvfp4.base import NVFP4PackedCompressor
    from compressed_tensors.quantization import QuantizationConfig

    scheme = QuantizationConfig.model_validate(cfg["quantization_config"]).config_groups["group_0"]
    parts = {}
    for k, dt in (("weight_packed", torch.uint8), ("weight_scale", torch.float8_e4m3fn), ("weight_global_scale", torch.float32)):
        _, shape, data = t.pop(f"{LAYER}.{k}")
        parts[k] = torch.frombuffer(bytearray(data), dtype=dt).reshape(shape)
    w = NVFP4PackedCompressor.decompress(parts, scheme)["weight"].to(torch.bfloat16)
    t[LAYER + ".weight"] = ["BF16", list(w.shape), w.view(torch.int16).numpy().tobytes()]
    cfg["quantization_config"]["ignore"].append(LAYER)
def m_zero_block_codes(t, meta, cfg):
    set_scale_byte(t[LAYER + ".weight_scale"], 0x00)
    d = bytearray(t[LAYER + ".weight_packed"][2])
    d[0] = 0x22
    t[LAYER + ".weight_packed"][2] = bytes(d)


CASES = {
    "missing_tensor": ("missing_tensor", m_missing_scale),
    "extra_dense_weight": ("extra_tensor", m_extra_dense),
    "scale_dtype": ("dtype", m_scale_dtype),
    "packed_shape": ("shape", m_packed_shape),
    "zero_global_scale": ("bad_global_scale", m_zero_global),
    "nan_global_scale": ("bad_global_scale", m_nan_global),
    "nan_block_scale": ("nan_scale", m_nan_block),
    "negative_block_scale": ("negative_scale", m_negative_block),
    "quant_method": ("config", m_quant_method),
    "group_size_32": ("config", m_group_size),
    "strategy_channel": ("config", m_strategy),
    "status_frozen": ("config", m_status),
    "quantized_but_ignored": ("ignore", m_quantized_but_ignored),
    "dense_linear_not_ignored": ("ignore", m_dense_not_ignored),
    "metadata_format": ("metadata", m_metadata),
    "zero_scale_nonzero_codes": ("zero_scale_nonzero_codes", m_zero_block_codes),
    "scalar_global_scale_0d": ("shape", m_scalar_global),
    "input_scale_in_w4a16": ("extra_tensor", m_input_scale_w4a16),
    "fused_member_kept_dense": ("fused_decision", m_fused_member_dense),
}


def library_outcome(model_dir, clean_logits):
    try:
        model, complaints = hf_load(model_dir)
        if complaints:
            return "complained", complaints[0]
        logits = hf_logits(model, IDS)
    except Exception as e:  # the library refused the file
        return "rejected", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if not np.all(np.isfinite(logits)):
        return "misread", "non-finite logits"
    diff = np.abs(logits - clean_logits).max()
    kl = kl_per_position(clean_logits, logits).mean()
    return ("misread" if diff > 0 else "same"), f"max|dlogit| vs clean {diff:.3g}, KL {kl:.3g}"


@pytest.fixture(scope="module")
def clean(models):
    d = models.quantized("qwen3-bf16-untied", "absmax")
    model, complaints = hf_load(d)
    assert complaints == []
    return d, hf_logits(model, IDS)


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_rule_matches_the_real_library(clean, case, tmp_path):
    clean_dir, clean_logits = clean
    kind, mutate = CASES[case]
    bad = tmp_path / case
    shutil.copytree(clean_dir, bad)
    tensors, meta = read_raw(bad / "model.safetensors")
    cfg = json.loads((bad / "config.json").read_text())
    meta = meta or {}
    mutate(tensors, meta, cfg)
    write_raw(bad / "model.safetensors", tensors, meta)
    (bad / "config.json").write_text(json.dumps(cfg))

    report = json.loads(run_fp4z("check", bad, "--json", "--quiet", expect=1).stdout)
    kinds = {f["kind"] for f in report["findings"] if f["severity"] == "error"}
    assert kind in kinds, f"fp4z check did not report {kind}: {sorted(kinds)}"

    outcome, detail = library_outcome(bad, clean_logits)
    print(f"{case}: fp4z check -> {kind}; transformers {outcome} ({detail})")
    if kind in READ_AS_WRITTEN:
        return
    assert outcome != "same", f"{case}: transformers reads the file as the clean one ({detail}); list the rule in READ_AS_WRITTEN"


def test_clean_file_reads_identically_twice(clean):
    """The 'misread' verdict is exact: two loads of the clean file give bit-identical logits."""
    clean_dir, clean_logits = clean
    assert library_outcome(clean_dir, clean_logits)[0] == "same"


def test_unfused_seed_is_read_correctly_by_transformers_but_flagged(models, tmp_path):
    """Seed output without --fused-global-scale: q/k/v carry different global scales. transformers applies each
    module's own scale (its logits match fp4z's engine); vLLM would apply the max to all three (READ_AS_WRITTEN)."""
    from conftest import fp4z_logits

    src = models.source("qwen3-bf16-untied")
    out = tmp_path / "seed_unfused"
    run_fp4z("quantize", "--source", src, "--template", models.quantized("qwen3-bf16-untied", "absmax"), "--method", "seed",
             "--alpha", "2.0", "--out", out, "--quiet")
    report = json.loads(run_fp4z("check", out, "--json", "--quiet", expect=1).stdout)
    assert "fused_global_scale" in {f["kind"] for f in report["findings"]}
    model, complaints = hf_load(out)
    assert complaints == []
    kl = kl_per_position(hf_logits(model, IDS), fp4z_logits(out, IDS, tmp_path)).mean()
    assert kl <= 5e-3, kl


E2M1_VALUES = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], np.float32)


def nvfp4_absmax(w):
    """Absmax NVFP4 of w [N, K] for any K (the last block short when K % 16 != 0), written here to build a file that
    fp4z and llm-compressor refuse to write: (codes [N, ceil(K/2)] U8, block scales [N, ceil(K/16)] F8, global [1] F32)."""
    import torch

    n, k = w.shape
    glob = np.float32(448 * 6) / np.abs(w).max()
    blocks = np.zeros((n, -(-k // 16) * 16), np.float32)
    blocks[:, :k] = w
    blocks = blocks.reshape(n, -1, 16)
    scale = torch.tensor(np.abs(blocks).max(-1) / 6 * glob).to(torch.float8_e4m3fn)
    step = scale.float().numpy()[..., None] / glob
    x = np.divide(blocks, step, out=np.zeros_like(blocks), where=step > 0)
    codes = (np.abs(np.abs(x)[..., None] - E2M1_VALUES).argmin(-1) | (np.signbit(x) << 3)).reshape(n, -1)[:, :k + k % 2]
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)
    return packed, scale.view(torch.uint8).numpy(), np.array([glob], np.float32)


def test_k_not_multiple_of_16_is_rejected_by_compressed_tensors(models, tmp_path):
    """stories260K's down_proj (K = 172) quantized anyway, with a short last block: compressed-tensors refuses it."""
    clean_dir = models.quantized("stories260K", "absmax")
    model, complaints = hf_load(clean_dir)
    assert complaints == []
    clean_logits = hf_logits(model, IDS)
    module = "model.layers.0.mlp.down_proj"
    bad = tmp_path / "k172"
    shutil.copytree(clean_dir, bad)
    tensors, meta = read_raw(bad / "model.safetensors")
    dtype, shape, data = tensors.pop(module + ".weight")
    assert dtype == "F32" and shape[1] % 16 != 0, (dtype, shape)
    packed, scale, glob = nvfp4_absmax(np.frombuffer(data, np.float32).reshape(shape))
    tensors[module + ".weight_packed"] = ["U8", list(packed.shape), packed.tobytes()]
    tensors[module + ".weight_scale"] = ["F8_E4M3", list(scale.shape), scale.tobytes()]
    tensors[module + ".weight_global_scale"] = ["F32", [1], glob.tobytes()]
    write_raw(bad / "model.safetensors", tensors, meta)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["quantization_config"]["ignore"].remove(module)
    (bad / "config.json").write_text(json.dumps(cfg))

    report = json.loads(run_fp4z("check", bad, "--json", "--quiet", expect=1).stdout)
    assert "k_not_multiple_of_16" in {f["kind"] for f in report["findings"] if f["severity"] == "error"}
    outcome, detail = library_outcome(bad, clean_logits)
    assert outcome == "rejected" and "group_size" in detail, (outcome, detail)


def test_no_quantized_linear_reads_as_the_dense_model(models, tmp_path):
    """A dense checkpoint with an NVFP4 quantization_config that ignores every Linear: fp4z check says it holds no
    NVFP4 Linear; transformers reads it as the dense model it is (READ_AS_WRITTEN: not a loader rule)."""
    import torch

    src = models.source("qwen3-bf16-untied")
    dense, complaints = hf_load(src)
    assert complaints == []
    bad = tmp_path / "no_quantized_linear"
    shutil.copytree(src, bad)
    cfg = json.loads((bad / "config.json").read_text())
    qcfg = json.loads((models.quantized("qwen3-bf16-untied", "absmax") / "config.json").read_text())["quantization_config"]
    qcfg["ignore"] = [n for n, m in dense.named_modules() if isinstance(m, torch.nn.Linear)]
    cfg["quantization_config"] = qcfg
    (bad / "config.json").write_text(json.dumps(cfg))

    report = json.loads(run_fp4z("check", bad, "--json", "--quiet", expect=1).stdout)
    assert "no_quantized_linear" in {f["kind"] for f in report["findings"] if f["severity"] == "error"}
    assert library_outcome(bad, hf_logits(dense, IDS))[0] == "same"


@pytest.mark.parametrize("value", [0.0, float("nan")], ids=["zero", "nan"])
def test_bad_input_global_scale_is_misread_in_w4a4(tmp_path, value):
    """W4A4 (activations quantized too; a compressed-tensors file written by tests/oracle_forward.py): an
    input_global_scale of 0 or NaN is bad_global_scale for fp4z check and gives non-finite logits in transformers."""
    import subprocess

    from conftest import NUMPY_ORACLE

    clean_dir = tmp_path / "w4a4"
    subprocess.run([*NUMPY_ORACLE, "make", "--arch", "qwen3", "--weights", "ct-w4a4", "--untied", "--out", str(clean_dir)],
                   check=True)
    model, complaints = hf_load(clean_dir)
    assert complaints == []
    clean_logits = hf_logits(model, IDS)
    assert np.all(np.isfinite(clean_logits))
    bad = tmp_path / "bad_input_scale"
    shutil.copytree(clean_dir, bad)
    tensors, meta = read_raw(bad / "model.safetensors")
    tensors[LAYER + ".input_global_scale"][2] = f32(value)
    write_raw(bad / "model.safetensors", tensors, meta or {})

    report = json.loads(run_fp4z("check", bad, "--json", "--quiet", expect=1).stdout)
    bad_scales = [f for f in report["findings"] if f["kind"] == "bad_global_scale" and f["severity"] == "error"]
    assert any(LAYER in f["tensor"] for f in bad_scales), report["findings"]
    assert library_outcome(bad, clean_logits) == ("misread", "non-finite logits")
