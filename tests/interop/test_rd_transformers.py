"""transformers (with compressed-tensors) loads fp4z's `quantize --method rd` output of stories260K without
missing/unexpected keys, and its decompressed weights are the NVFP4 values decoded from the files (up to BF16 rounding)."""
import logging
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

FP4Z = os.environ.get("FP4Z_BINARY", "build/fp4z")
FIX = Path(os.environ.get("FP4Z_FIXTURES", "../shared/fixtures"))

E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], dtype=np.float32)


def e4m3(b):
    b = b.astype(np.int64)
    e, m = (b >> 3) & 15, b & 7
    v = np.where(e == 0, m / 512.0, (1 + m / 8.0) * 2.0 ** (e - 7))
    return np.where(b & 0x80, -v, v).astype(np.float32)


@pytest.fixture(scope="module")
def rd_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rd")
    src, out = tmp / "src", tmp / "rd"
    subprocess.run([FP4Z, "import-llama2c", str(FIX / "stories260K/stories260K.bin"), "--tokenizer",
                    str(FIX / "stories260K/tok512.bin"), "--out", str(src), "-q"], check=True)
    text = (FIX / "eval/tinystories/tinystories_val.txt").read_text()[:60000]
    (tmp / "calib.txt").write_text(text)
    subprocess.run([FP4Z, "quantize", "--source", str(src), "--out", str(out), "--method", "rd", "--target-bits", "3.6",
                    "--calibration", str(tmp / "calib.txt"), "--calibration-seqs", "4", "--calibration-ctx", "128",
                    "--sensitivity-seqs", "2", "-q"], check=True)
    return out


def test_transformers_loads_rd_output_exactly(rd_dir, caplog):
    import torch
    import transformers
    from safetensors.torch import load_file

    transformers.logging.set_verbosity_warning()
    caplog.set_level(logging.WARNING)
    # run_compressed=False: decompress to dense weights at load (the CPU path).
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(rd_dir), dtype=torch.float32, quantization_config=transformers.CompressedTensorsConfig(run_compressed=False))
    logs = caplog.text.lower()
    assert "missing" not in logs and "unexpected" not in logs and "newly initialized" not in logs, caplog.text
    t = load_file(str(rd_dir / "model.safetensors"))
    name = "model.layers.1.self_attn.k_proj"
    packed = t[name + ".weight_packed"].numpy()
    scales = t[name + ".weight_scale"].view(torch.uint8).numpy()
    gs = t[name + ".weight_global_scale"].numpy()[0]
    codes = np.stack([packed & 15, packed >> 4], axis=-1).reshape(packed.shape[0], -1)
    assert not (codes == 8).any(), "rd writes -0 as +0"
    want = E2M1[codes] * np.repeat(e4m3(scales) / np.float32(gs), 16, axis=1)
    # The decompressed weight is these values (transformers keeps it in BF16: one rounding).
    got = model.get_submodule(name).weight.detach().float().numpy()
    np.testing.assert_allclose(got, want, rtol=2.0 ** -8, atol=0)
    ids = torch.tensor([[1, 403, 407, 261, 378]])
    with torch.no_grad():
        assert torch.isfinite(model.to(torch.bfloat16)(ids).logits).all()
