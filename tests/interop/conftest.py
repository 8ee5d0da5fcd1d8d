"""Shared fixtures of the interop suite: fp4z's outputs judged by the real transformers, compressed-tensors and llm-compressor.

Models are made once per pytest process (session scope) under a temporary directory:
  stories260K      the trained llama2.c model imported by `fp4z import-llama2c` (F32, tied head)
  qwen3-bf16       generated Qwen3 (real tensor names, q/k norms, GQA 4/2, head_dim 128), tied head stored
                   with the embedding's values like Qwen3-0.6B
  qwen3-bf16-nohead  tied, no lm_head.weight stored (like Qwen3-4B)
  qwen3-bf16-untied  untied head
  qwen3-f32        the Qwen3 shape stored in F32 (tied, head stored)
  llama-bf16       generated Llama (untied head, llama3 rope scaling, K = 352)
Each can be quantized by fp4z as `absmax`, `seed` (alpha 2, fused global scale, absmax output as
template), `rd` (rate-distortion at 3.6 bits/weight, no calibration) or `modelopt` (absmax written in
the ModelOpt convention).
"""
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

SOURCE_DIR = Path(os.environ.get("FP4Z_SOURCE_DIR", Path(__file__).resolve().parents[2]))
FP4Z = os.environ.get("FP4Z_BINARY", str(SOURCE_DIR / "build" / "fp4z"))
FIXTURES = Path(os.environ.get("FP4Z_FIXTURES", SOURCE_DIR.parent / "shared" / "fixtures"))
NUMPY_ORACLE = [sys.executable, str(SOURCE_DIR / "tests" / "oracle_forward.py")]

GENERATED = {
    "qwen3-bf16": ["--arch", "qwen3", "--weights", "bf16", "--tied-head", "copy"],
    "qwen3-bf16-nohead": ["--arch", "qwen3", "--weights", "bf16", "--tied-head", "absent"],
    "qwen3-bf16-untied": ["--arch", "qwen3", "--weights", "bf16", "--untied"],
    "qwen3-f32": ["--arch", "qwen3", "--weights", "f32", "--tied-head", "copy"],
    "llama-bf16": ["--arch", "llama", "--weights", "bf16"],
}


def run_fp4z(*args, expect=0):
    """Runs build/fp4z; fails the test with its stderr unless it exits with `expect`."""
    p = subprocess.run([FP4Z, *map(str, args)], capture_output=True, text=True)
    if p.returncode != expect:
        pytest.fail(f"fp4z {' '.join(map(str, args))} exited {p.returncode} (expected {expect}):\n{p.stderr}{p.stdout}")
    return p


def fp4z_logits(model_dir, ids, tmp_dir, exact=True):
    """fp4z's engine (the exact f32 path unless exact=False): logits of every position, [len(ids), vocab]."""
    out = Path(tmp_dir) / f"logits_{os.getpid()}_{abs(hash((str(model_dir), tuple(ids), exact)))}.npy"
    run_fp4z("eval", "logits", "--model", model_dir, "--ids", ",".join(map(str, ids)), "-o", out, "--force", "-q",
             *(["--exact"] if exact else []))
    return np.load(out)


class LoadLog(logging.Handler):
    """Collects what transformers logs while loading (missing/unexpected-key warnings are logged, not raised)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def hf_load(model_dir, **kwargs):
    """AutoModelForCausalLM.from_pretrained with every loading complaint collected; returns (model, complaints)."""
    import transformers
    from transformers import AutoModelForCausalLM

    transformers.utils.logging.set_verbosity_warning()
    handler = LoadLog()
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model, info = AutoModelForCausalLM.from_pretrained(str(model_dir), output_loading_info=True, **kwargs)
    finally:
        logger.removeHandler(handler)
    complaints = [f"{k}: {sorted(v)}" for k, v in info.items() if v]
    key_words = ("missing", "unexpected", "newly initialized", "not initialized", "not used", "mismatch")
    for text in handler.messages + [str(w.message) for w in caught]:
        if any(k in text.lower() for k in key_words):
            complaints.append(text.strip().splitlines()[0])
    model.eval()
    return model, complaints


def hf_logits(model, ids):
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def kl_per_position(p_logits, q_logits):
    """KL(p || q) per position in float64 over the full vocabulary."""
    a = p_logits.astype(np.float64)
    b = q_logits.astype(np.float64)
    la = a - a.max(-1, keepdims=True)
    la -= np.log(np.exp(la).sum(-1, keepdims=True))
    lb = b - b.max(-1, keepdims=True)
    lb -= np.log(np.exp(lb).sum(-1, keepdims=True))
    return (np.exp(la) * (la - lb)).sum(-1)


class ModelFactory:
    def __init__(self, root):
        self.root = Path(root)
        self.made = {}

    def source(self, name):
        if name in self.made:
            return self.made[name]
        out = self.root / name
        if name == "stories260K":
            fx = FIXTURES / "stories260K"
            run_fp4z("import-llama2c", fx / "stories260K.bin", "--tokenizer", fx / "tok512.bin", "--out", out)
        else:
            subprocess.run([*NUMPY_ORACLE, "make", *GENERATED[name], "--out", str(out)], check=True)
        self.made[name] = out
        return out

    def quantized(self, name, variant):
        key = f"{name}@{variant}"
        if key in self.made:
            return self.made[key]
        src = self.source(name)
        out = self.root / key
        if variant == "absmax":
            run_fp4z("quantize", "--source", src, "--out", out, "--quiet")
        elif variant == "modelopt":
            run_fp4z("quantize", "--source", src, "--out", out, "--format", "modelopt", "--quiet")
        elif variant == "seed":
            run_fp4z("quantize", "--source", src, "--template", self.quantized(name, "absmax"), "--method", "seed",
                     "--alpha", "2.0", "--fused-global-scale", "--out", out, "--quiet")
        elif variant == "rd":  # rate-distortion at 3.6 bits/weight, weight MSE (no calibration text needed)
            run_fp4z("quantize", "--source", src, "--out", out, "--method", "rd", "--target-bits", "3.6", "--quiet")
        else:
            raise ValueError(variant)
        self.made[key] = out
        return out


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    return ModelFactory(tmp_path_factory.mktemp("models"))


def pytest_report_header(config):
    import compressed_tensors
    import tokenizers
    import torch
    import transformers

    versions = [f"torch {torch.__version__}", f"transformers {transformers.__version__}",
                f"compressed-tensors {compressed_tensors.__version__}", f"tokenizers {tokenizers.__version__}"]
    try:
        import llmcompressor

        versions.append(f"llmcompressor {llmcompressor.__version__}")
    except Exception as e:  # reported, and the llm-compressor tests fail on their own import
        versions.append(f"llmcompressor unavailable ({e})")
    return "fp4z interop oracles: " + ", ".join(versions)
