"""Prints the measured margins behind tests/interop/test_transformers_load.py's tolerances (docs/interop.md): per model and variant.

Run from the repository root after the build: .venv/bin/python bench/interop_logit_margins.py [WORK_DIR]
(FP4Z_FIXTURES defaults to ../shared/fixtures). Columns, worst of the test's two sequences:
  rel, abs       max |Δlogit| of fp4z's exact engine vs transformers as users load the file, relative to
                 the largest |logit| and absolute
  KL, top1       mean KL(transformers || fp4z) per position, and the lowest top-1 agreement
  exact_rel/KL   the same vs compressed-tensors' own decompression run in an f32 model
  int8KL         fp4z's default int8 activations vs its exact path
  scale          the largest |logit| (with a one-hot softmax, KL and top-1 cannot tell models apart)
"""
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "interop"))
from conftest import ModelFactory, fp4z_logits, hf_load, hf_logits, kl_per_position  # noqa: E402
from test_transformers_load import SOURCES, VARIANTS, f32_reference_model, token_sequences  # noqa: E402


def main():
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="fp4z_margins_"))
    root.mkdir(parents=True, exist_ok=True)
    factory = ModelFactory(root)
    for source in SOURCES:
        for variant in VARIANTS:
            model_dir = factory.source(source) if variant is None else factory.quantized(source, variant)
            model, complaints = hf_load(model_dir)
            rows = []
            for ids in token_sequences(model_dir, model.config.vocab_size):
                ours, theirs = fp4z_logits(model_dir, ids, root), hf_logits(model, ids)
                scale = np.abs(theirs).max()
                row = [np.abs(ours - theirs).max() / scale, np.abs(ours - theirs).max(), kl_per_position(theirs, ours).mean(),
                       -(ours.argmax(-1) == theirs.argmax(-1)).mean(), scale]
                if variant is not None:
                    exact = hf_logits(f32_reference_model(model_dir), ids)
                    row += [np.abs(ours - exact).max() / scale, kl_per_position(exact, ours).mean(),
                            kl_per_position(ours, fp4z_logits(model_dir, ids, root, exact=False)).mean()]
                rows.append(row)
            w = np.max(np.array(rows), 0)
            line = (f"{source:18s} {variant or 'source':7s} {str(model.dtype):15s} complaints {len(complaints)} rel {w[0]:.3g} "
                    f"abs {w[1]:.3g} KL {w[2]:.3g} top1 {-w[3]:.3f} scale {w[4]:.3g}")
            if variant is not None:
                line += f" exact_rel {w[5]:.3g} exact_KL {w[6]:.3g} int8KL {w[7]:.3g}"
            print(line, flush=True)
    if len(sys.argv) <= 1:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
