"""`fp4z eval mmlu --log-samples`: every logged prompt, its ids and the four choice logits, reproduced with transformers.

The model is a tiny Qwen3 with the real Qwen3 vocabulary and tokenizer (BF16, tied head), so the prompts are the
real MMLU prompts. transformers loads it with dtype=float32 (BF16 widens exactly), so both sides compute in f32:
the choice logits agree to f32 summation-order differences (<= 1e-3 absolute on logits of order 1).
"""
import json
import shutil
import subprocess

import numpy as np

from conftest import FIXTURES, NUMPY_ORACLE, run_fp4z

SUBJECTS = ["abstract_algebra", "college_medicine"]
PER_SUBJECT = 3


def read_answers(subject):
    import csv

    with open(FIXTURES / "eval" / "mmlu" / "test" / f"{subject}_test.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return [int(r[5]) for r in rows[1:]]  # the answer column holds 0..3


def test_log_samples_match_transformers(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = tmp_path / "qwen3-vocab"
    subprocess.run([*NUMPY_ORACLE, "make", "--arch", "qwen3-vocab", "--weights", "bf16", "--tied-head", "copy", "--out", str(model_dir)], check=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(FIXTURES / "qwen3-tokenizer" / f, model_dir / f)
    log = tmp_path / "samples.jsonl"
    out = run_fp4z("eval", "mmlu", "--model", model_dir, "--data", FIXTURES / "eval" / "mmlu", "--subjects", ",".join(SUBJECTS),
                   "--limit-per-subject", PER_SUBJECT, "--log-samples", log, "--json", "--quiet")
    summary = json.loads(out.stdout)
    samples = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(samples) == len(SUBJECTS) * PER_SUBJECT == summary["num_examples"]
    assert [s["prediction"] for s in samples] == summary["predictions"]
    run_fp4z("eval", "mmlu", "--model", model_dir, "--data", FIXTURES / "eval" / "mmlu", "--subjects", SUBJECTS[0],
             "--limit-per-subject", 1, "--log-samples", log, "--quiet", expect=2)  # exists: needs --force

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    letters = [tok(" " + c, add_special_tokens=False).input_ids for c in "ABCD"]
    assert all(len(l) == 1 for l in letters)
    letters = [l[0] for l in letters]
    for k, s in enumerate(samples):
        subject = SUBJECTS[k // PER_SUBJECT]
        assert (s["subject"], s["doc_id"]) == (subject, k % PER_SUBJECT)
        assert s["gold"] == read_answers(subject)[s["doc_id"]]
        assert s["prompt"].startswith(f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n")
        assert s["prompt"].endswith("\nAnswer:")
        assert s["prompt_ids"] == tok(s["prompt"], add_special_tokens=False).input_ids
        with torch.no_grad():
            logits = model(torch.tensor([s["prompt_ids"]])).logits[0, -1].numpy()
        theirs = logits[letters]
        np.testing.assert_allclose(s["choice_logits"], theirs, atol=1e-3, rtol=0, err_msg=f"sample {k}")
        assert s["prediction"] == int(np.argmax(s["choice_logits"]))
        assert s["acc"] == float(s["prediction"] == s["gold"])
