#!/usr/bin/python3
# Independent re-implementation of llama2.c run.c `encode` (score-greedy pair merging) for tokenizer_test.
#
# Usage: /usr/bin/python3 tests/tokenizer_llama2c_reference.py TOK.bin < texts.jsonl > ids.jsonl
# Each input line is a JSON string; each output line the JSON array of ids run.c produces with
# bos=0, eos=0 (dummy-prefix " " token for non-empty text, then code points, byte fallback, merges).
import json
import struct
import sys

NO_PAIR = float("-inf")


def load_vocab(path):
    data = open(path, "rb").read()
    offset = 4  # int32 max_token_length
    pieces, scores = [], []
    while offset < len(data):
        score, length = struct.unpack_from("<fi", data, offset)
        offset += 8
        pieces.append(data[offset:offset + length])
        scores.append(score)
        offset += length
    return pieces, scores


def encode(text, pieces, scores, lookup, pair_cache):
    raw = text.encode("utf-8")
    tokens = []
    if raw:
        tokens.append(lookup[b" "])
    # Code points: a leading byte plus up to three continuation bytes, as run.c groups them.
    i = 0
    while i < len(raw):
        j = i + 1
        while j < len(raw) and (raw[j] & 0xC0) == 0x80 and j - i < 4:
            j += 1
        group = raw[i:j]
        if group in lookup:
            tokens.append(lookup[group])
        else:
            tokens.extend(b + 3 for b in group)
        i = j
    # pair_scores[k]: score of the piece tokens[k] + tokens[k+1] forms, or -inf when it is none.
    def pair(k):
        key = (tokens[k], tokens[k + 1])
        tid = pair_cache.get(key)
        if tid is None:
            tid = pair_cache[key] = lookup.get(pieces[key[0]] + pieces[key[1]], -1)
        return tid

    ids = [pair(k) for k in range(len(tokens) - 1)]
    pair_scores = [scores[t] if t >= 0 else NO_PAIR for t in ids]
    while pair_scores:
        best_pos = max(range(len(pair_scores)), key=pair_scores.__getitem__)  # first maximum
        if pair_scores[best_pos] == NO_PAIR:
            break
        tokens[best_pos:best_pos + 2] = [ids[best_pos]]
        del ids[best_pos]
        del pair_scores[best_pos]
        for k in (best_pos - 1, best_pos):
            if 0 <= k < len(tokens) - 1:
                ids[k] = pair(k)
                pair_scores[k] = scores[ids[k]] if ids[k] >= 0 else NO_PAIR
    return tokens


def main():
    pieces, scores = load_vocab(sys.argv[1])
    lookup = {}
    for tid, p in enumerate(pieces):
        lookup.setdefault(p, tid)
    pair_cache = {}
    out = []
    for line in sys.stdin.read().split("\n"):
        if line:
            out.append(json.dumps(encode(json.loads(line), pieces, scores, lookup, pair_cache), separators=(",", ":")))
    sys.stdout.write("".join(o + "\n" for o in out))


if __name__ == "__main__":
    main()
