"""Tokenizers as transformers users load them: the llama2.c tokenizer converted by `import-llama2c`, and Qwen3's.

The bulk comparison of fp4z's Qwen3 tokenizer with PyPI `tokenizers` (every MMLU and WikiText line, random
strings) is tests/tokenizer_test.cpp; here AutoTokenizer, with its own special-token handling, is the oracle.
"""
import json

import pytest

from conftest import FIXTURES, run_fp4z

HARD_CASES = [
    "", " ", "  leading spaces", "tabs\tand\nnewlines\n\n", "trailing  ", "\u201cquotes\u201d \u00e9 \u4e2d\u6587 \U0001F600",
    "Lily's dog didn't want to go.", "123 4567 89", "a" * 200, "\u00ff\u0100 byte fallback \u0800\uffff",
]


def fp4z_ids(model_dir, text, bos):
    p = run_fp4z("tokenize", "--model", model_dir, "--json", *(["--bos"] if bos else []), "--", text)
    return json.loads(p.stdout)["ids"]


def tinystories_lines(count):
    lines = (FIXTURES / "eval" / "tinystories" / "tinystories_val.txt").read_text(encoding="utf-8").split("\n")
    return [l for l in lines if l][:count]


def test_llama2c_tokenizer_loads_in_transformers(models):
    from transformers import AutoTokenizer

    model_dir = models.source("stories260K")
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    assert tok.bos_token_id == 1 and tok.eos_token_id == 2
    differences = []
    for text in tinystories_lines(200) + HARD_CASES:
        for bos in (False, True):
            theirs = tok(text, add_special_tokens=bos).input_ids
            ours = fp4z_ids(model_dir, text, bos)
            if ours != theirs:
                differences.append((text, bos, ours, theirs))
    assert differences == [], differences[:3]


@pytest.mark.parametrize("text", [
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n", "<think>\n\n</think>\n\nok", "<|endoftext|>x",
    "a <|im_start|> b", "<|im_sta", "The answer is: 42.\r\n", " \u00a0\u2003spaces\u3000", "caf\u0065\u0301 vs caf\u00e9",
])
def test_qwen3_special_tokens_match_autotokenizer(tmp_path, text):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(FIXTURES / "qwen3-tokenizer"))
    assert fp4z_ids(FIXTURES / "qwen3-tokenizer", text, False) == tok(text, add_special_tokens=False).input_ids
