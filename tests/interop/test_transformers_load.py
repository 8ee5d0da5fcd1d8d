"""transformers (with compressed-tensors) loads every checkpoint fp4z writes, and its logits match fp4z's engine.

Two comparisons per checkpoint, on fixed token sequences:
1. As users load it: AutoModelForCausalLM.from_pretrained(dir) with no argument. NVFP4 checkpoints run in
   BF16 (compressed-tensors decompresses NVFP4 to BF16), so the tolerance is BF16's: every matmul rounds
   to 8 significant bits (relative 2^-9 per operation), which over a few layers moves logits by about 1%
   of their range. Bounds: max |Δlogit| <= 4% of the largest |logit|, mean KL <= 5e-3 nats, top-1
   agreement >= 90%. A wrong scale, packing, permutation or head gives KL > 0.1 and top-1 near chance.
2. The exact check: the library's own decompression (compressed-tensors' NVFP4PackedCompressor) of each
   layer, run in a float32 transformers model of the same config. fp4z dequantizes in f32, the library
   rounds each dequantized weight to BF16 (relative error <= 2^-9), so logits may differ by that
   rounding only: max |Δlogit| <= 1% of the largest |logit| and mean KL <= 1e-4. F32/BF16 sources
   (no quantization) run in f32 on both sides: max |Δlogit| <= 1e-3 (f32 summation order only).
3. fp4z's default (int8 activations per 16 features in the NVFP4 linears) against its exact path:
   mean KL <= 1e-3, an order of magnitude below what NVFP4 itself costs (KL ~0.1 on stories260K).
"""
import numpy as np
import pytest
import torch

from conftest import fp4z_logits, hf_load, hf_logits, kl_per_position, run_fp4z

SOURCES = ["stories260K", "qwen3-bf16", "qwen3-bf16-nohead", "qwen3-bf16-untied", "qwen3-f32", "llama-bf16"]
VARIANTS = [None, "absmax", "seed", "rd"]


def token_sequences(model_dir, vocab):
    """Two fixed sequences: real text for stories260K (its own tokenizer), fixed random ids otherwise."""
    if "stories260K" in str(model_dir):
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(model_dir))
        texts = ["Once upon a time, there was a little girl named Lily. She loved to play outside in the sun.",
                 "The dog ran to the park. He saw a big red ball and wanted to play with it."]
        return [tok(t).input_ids for t in texts]
    rng = np.random.default_rng(1234)
    return [[1] + rng.integers(3, vocab, size=47).tolist(), rng.integers(3, vocab, size=24).tolist()]


def f32_reference_model(model_dir):
    """A float32 transformers model whose NVFP4 linears hold compressed-tensors' own decompression."""
    from compressed_tensors.compressors.nvfp4.base import NVFP4PackedCompressor
    from compressed_tensors.quantization import QuantizationConfig
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(model_dir))
    qcfg = QuantizationConfig.model_validate(config.quantization_config)
    scheme = qcfg.config_groups["group_0"]
    del config.quantization_config
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tensors = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    state = {}
    for name in [n for n in tensors if n.endswith(".weight_packed")]:
        module = name[: -len(".weight_packed")]
        parts = {k: tensors.pop(f"{module}.{k}") for k in ("weight_packed", "weight_scale", "weight_global_scale")}
        state[f"{module}.weight"] = NVFP4PackedCompressor.decompress(parts, scheme)["weight"].float()
    state.update({k: v.float() for k, v in tensors.items()})
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = getattr(config, "tie_word_embeddings", False)
    assert not unexpected, unexpected
    assert not [k for k in missing if not (tied and k == "lm_head.weight")], missing
    if tied:
        model.tie_weights()
    return model.eval()


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v or "source")
@pytest.mark.parametrize("source", SOURCES)
def test_loads_and_matches_engine(models, source, variant, tmp_path):
    model_dir = models.source(source) if variant is None else models.quantized(source, variant)
    model, complaints = hf_load(model_dir)
    assert complaints == [], f"transformers complained while loading {model_dir.name}: {complaints}"
    if variant is not None:
        assert model.config.quantization_config is not None
    vocab = model.config.vocab_size
    for ids in token_sequences(model_dir, vocab):
        ours = fp4z_logits(model_dir, ids, tmp_path)
        theirs = hf_logits(model, ids)
        assert ours.shape == theirs.shape
        scale = np.abs(theirs).max()
        kl = kl_per_position(theirs, ours)
        top1 = (ours.argmax(-1) == theirs.argmax(-1)).mean()
        diff = np.abs(ours - theirs).max()
        msg = f"{model_dir.name}: max|dlogit| {diff:.4g} (scale {scale:.4g}), KL mean {kl.mean():.3g}, top-1 {top1:.3f}"
        if variant is None and model.dtype == torch.float32:
            assert diff <= 1e-3, msg
            continue
        assert diff <= 0.04 * scale, msg
        assert kl.mean() <= 5e-3, msg
        assert top1 >= 0.9, msg
        if variant is None:
            continue
        exact = hf_logits(f32_reference_model(model_dir), ids)
        kl_exact = kl_per_position(exact, ours)
        diff_exact = np.abs(ours - exact).max()
        msg = f"{model_dir.name} vs decompressed f32: max|dlogit| {diff_exact:.4g} (scale {scale:.4g}), KL mean {kl_exact.mean():.3g}"
        assert diff_exact <= 0.01 * scale, msg
        assert kl_exact.mean() <= 1e-4, msg
        kl_int8 = kl_per_position(ours, fp4z_logits(model_dir, ids, tmp_path, exact=False))
        assert kl_int8.mean() <= 1e-3, f"{model_dir.name}: int8 activations vs exact: KL mean {kl_int8.mean():.3g}"


def test_bf16_source_runs_in_f32_too(models, tmp_path):
    """A BF16 source loaded with dtype=float32 (exact widening) matches the engine's f32 arithmetic closely."""
    model_dir = models.source("qwen3-bf16-untied")
    model, complaints = hf_load(model_dir, dtype=torch.float32)
    assert complaints == []
    ids = token_sequences(model_dir, model.config.vocab_size)[0]
    diff = np.abs(fp4z_logits(model_dir, ids, tmp_path) - hf_logits(model, ids)).max()
    assert diff <= 1e-3, diff


def test_f32_declared_nvfp4_fails_in_transformers(models, tmp_path):
    """Why fp4z declares bfloat16 compute for NVFP4 outputs of F32 sources: declared float32, the real
    library fails at the first matrix product (compressed-tensors decompresses to BF16)."""
    import json
    import shutil

    src = models.quantized("stories260K", "absmax")
    bad = tmp_path / "declared_f32"
    shutil.copytree(src, bad)
    cfg = json.loads((bad / "config.json").read_text())
    assert cfg["torch_dtype"] == "bfloat16"
    cfg["torch_dtype"] = "float32"
    (bad / "config.json").write_text(json.dumps(cfg))
    model, _ = hf_load(bad)
    with pytest.raises(RuntimeError, match="dtype"):
        hf_logits(model, [1, 2, 3])


@pytest.mark.parametrize("source", ["stories260K", "qwen3-bf16-untied"])
def test_canonical_zero_reads_as_absmax(models, source, tmp_path):
    """`--canonical-zero` (code 0 for -0) is the one absmax option that changes bytes: transformers loads it with no
    complaint and computes bit-identical logits to the plain absmax output."""
    out = tmp_path / "canonical_zero"
    run_fp4z("quantize", "--source", models.source(source), "--out", out, "--canonical-zero", "--quiet")
    plain_dir = models.quantized(source, "absmax")
    assert (out / "model.safetensors").read_bytes() != (plain_dir / "model.safetensors").read_bytes()
    model, complaints = hf_load(out)
    assert complaints == []
    plain, _ = hf_load(plain_dir)
    for ids in token_sequences(plain_dir, model.config.vocab_size):
        np.testing.assert_array_equal(hf_logits(model, ids), hf_logits(plain, ids))
