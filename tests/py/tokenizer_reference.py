"""Reference encoder for tokenizer_test: encodes JSON-string lines with Hugging Face's PyPI `tokenizers` (the Rust core).

Usage: .venv/bin/python tests/py/tokenizer_reference.py TOKENIZER_DIR < texts.jsonl > ids.jsonl
Each input line is a JSON string (the text); each output line is the JSON array of its ids
(encode(text, add_special_tokens=False)), exactly as the library returns them.
"""
import json
import os
import sys

from tokenizers import Tokenizer


def main() -> int:
    if len(sys.argv) != 2:
        sys.stderr.write("usage: tokenizer_reference.py TOKENIZER_DIR < texts.jsonl\n")
        return 2
    tokenizer = Tokenizer.from_file(os.path.join(sys.argv[1], "tokenizer.json"))
    texts = [json.loads(line) for line in sys.stdin.read().split("\n") if line]
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False) if texts else []
    sys.stdout.write("".join(json.dumps(e.ids) + "\n" for e in encodings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
