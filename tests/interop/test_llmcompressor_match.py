"""llm-compressor is the producer to match: its NVFP4A16 oneshot and `fp4z quantize --method absmax` write the same bytes.

llm-compressor runs on the same source checkpoints (F32 and BF16; Llama and Qwen3 shapes with fused q/k/v and
gate/up groups). It refuses targeted Linears whose in_features is not a multiple of 16, so those go in its
`ignore` (with lm_head), exactly the layers fp4z keeps by itself. Compared: every tensor's dtype, shape and
bytes; the `ignore` sets; and the two quantization_config objects as parsed by compressed-tensors' own
QuantizationConfig and as written in config.json, key by key. Keys allowed to differ, each for a stated reason, are listed in
ALLOWED_CONFIG_DIFFERENCES.
"""
import json
import struct
from pathlib import Path

import pytest

from conftest import run_fp4z

# Keys of config.json that differ on purpose (checked to be the only differences):
ALLOWED_CONFIG_DIFFERENCES = {
    # The compressed-tensors version that wrote the file: llm-compressor stamps its installed library's
    # version; fp4z stamps the format version its writer follows. Loaders do not read it.
    "quantization_config.version",
    # fp4z declares bfloat16 compute for NVFP4 outputs, since compressed-tensors decompresses NVFP4 to
    # BF16 and a float32 declaration fails in transformers (test_transformers_load). llm-compressor
    # keeps the source's float32, which cannot be loaded. Only differs for F32 sources.
    "torch_dtype",
}

SOURCES = ["stories260K", "qwen3-bf16", "qwen3-bf16-nohead", "qwen3-bf16-untied", "qwen3-f32", "llama-bf16"]


def raw_tensors(model_dir):
    """name -> (dtype, shape, bytes), read from the safetensors files without any library."""
    out = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        b = f.read_bytes()
        (n,) = struct.unpack("<Q", b[:8])
        header = json.loads(b[8:8 + n])
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, end = info["data_offsets"]
            out[name] = (info["dtype"], tuple(info["shape"]), b[8 + n + start:8 + n + end])
    return out


def llmcompressor_nvfp4a16(src, out):
    """llm-compressor's own weight-only NVFP4 (scheme NVFP4A16, no calibration data), saved compressed."""
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(src), dtype="auto")
    ignore = ["lm_head"] + [name for name, m in model.named_modules()
                            if m.__class__.__name__ == "Linear" and name != "lm_head" and m.in_features % 16 != 0]
    oneshot(model=model, recipe=QuantizationModifier(targets="Linear", scheme="NVFP4A16", ignore=ignore))
    model.save_pretrained(str(out), save_compressed=True)
    return ignore


def flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.mark.parametrize("source", SOURCES)
def test_absmax_is_byte_identical_to_llmcompressor(models, source, tmp_path):
    from compressed_tensors.quantization import QuantizationConfig

    src = models.source(source)
    ours_dir = models.quantized(source, "absmax")
    theirs_dir = tmp_path / "llmcompressor"
    their_ignore = llmcompressor_nvfp4a16(src, theirs_dir)

    ours, theirs = raw_tensors(ours_dir), raw_tensors(theirs_dir)
    assert sorted(ours) == sorted(theirs), (sorted(set(ours) ^ set(theirs)))
    packed = [n for n in ours if n.endswith(".weight_packed")]
    assert packed, "nothing was quantized"
    differing = [n for n in ours if ours[n] != theirs[n]]
    assert differing == [], f"{len(differing)} tensors differ, e.g. {differing[:5]}"
    if source.startswith("qwen3"):  # fused groups share one global scale, in both producers
        for layer in {n.split(".self_attn")[0] for n in packed if ".self_attn." in n}:
            qkv = {ours[f"{layer}.self_attn.{p}_proj.weight_global_scale"][2] for p in "qkv"}
            assert len(qkv) == 1, layer
            mlp = {ours[f"{layer}.mlp.{p}_proj.weight_global_scale"][2] for p in ("gate", "up")}
            assert len(mlp) == 1, layer

    our_cfg = json.loads((ours_dir / "config.json").read_text())
    their_cfg = json.loads((theirs_dir / "config.json").read_text())
    assert set(our_cfg["quantization_config"]["ignore"]) == set(their_cfg["quantization_config"]["ignore"]) == set(their_ignore)
    ours_q = QuantizationConfig.model_validate(our_cfg["quantization_config"]).model_dump()
    theirs_q = QuantizationConfig.model_validate(their_cfg["quantization_config"]).model_dump()
    ours_q["ignore"] = sorted(ours_q["ignore"])
    theirs_q["ignore"] = sorted(theirs_q["ignore"])
    our_flat = flatten({k: v for k, v in our_cfg.items() if k != "quantization_config"} | {"quantization_config": ours_q})
    their_flat = flatten({k: v for k, v in their_cfg.items() if k != "quantization_config"} | {"quantization_config": theirs_q})
    keys = set(our_flat) | set(their_flat)
    differing = sorted(k for k in keys if our_flat.get(k, "<absent>") != their_flat.get(k, "<absent>"))
    unexplained = [f"{k}: fp4z {our_flat.get(k, '<absent>')!r} vs llm-compressor {their_flat.get(k, '<absent>')!r}"
                   for k in differing if k not in ALLOWED_CONFIG_DIFFERENCES]
    assert unexplained == []
    # The files as written, too: QuantizationConfig re-stamps `version` and drops keys it does not model.
    raw_ours, raw_theirs = (flatten(cfg | {"quantization_config": cfg["quantization_config"] | {"ignore": sorted(cfg["quantization_config"]["ignore"])}})
                            for cfg in (our_cfg, their_cfg))
    raw_differing = sorted(k for k in set(raw_ours) | set(raw_theirs) if raw_ours.get(k, "<absent>") != raw_theirs.get(k, "<absent>"))
    assert [k for k in raw_differing if k not in ALLOWED_CONFIG_DIFFERENCES] == [], \
        {k: (raw_ours.get(k, "<absent>"), raw_theirs.get(k, "<absent>")) for k in raw_differing}
    if source in ("stories260K", "qwen3-f32"):
        assert their_cfg.get("torch_dtype") == "float32" and our_cfg.get("torch_dtype") == "bfloat16"


def test_modelopt_output_carries_the_same_quantization(models):
    """No PyPI library loads ModelOpt NVFP4 on CPU (transformers 5.17 has no 'modelopt' loader; vLLM needs a
    GPU), so the ModelOpt output is checked to hold the very bytes the llm-compressor-identical
    compressed-tensors output holds: weight == weight_packed, the same weight_scale, weight_scale_2 == 1/global."""
    import numpy as np

    ct = raw_tensors(models.quantized("qwen3-bf16", "absmax"))
    mo = raw_tensors(models.quantized("qwen3-bf16", "modelopt"))
    modules = [n[: -len(".weight_packed")] for n in ct if n.endswith(".weight_packed")]
    assert modules
    for m in modules:
        assert mo[m + ".weight"] == ct[m + ".weight_packed"]
        assert mo[m + ".weight_scale"] == ct[m + ".weight_scale"]
        g = np.frombuffer(ct[m + ".weight_global_scale"][2], np.float32)[0]
        s2 = np.frombuffer(mo[m + ".weight_scale_2"][2], np.float32)[0]
        assert s2 == np.float32(1) / g
    hf = json.loads((models.quantized("qwen3-bf16", "modelopt") / "hf_quant_config.json").read_text())
    assert hf["quantization"]["quant_algo"] == "W4A16_NVFP4"
