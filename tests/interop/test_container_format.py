"""The .fp4z format as docs/format.md specifies it, read by an independent pure-Python decoder (§3–§5, rANS §4.2).

fp4z compresses a small NVFP4-shaped safetensors file; this reader parses the header, trailer and index
itself and decodes every rans-bytes chunk with the normative loop of §4.2 (32 lanes in mode 2, 64 in
mode 3), so an encoder and decoder that drifted from the document together would fail here.
"""
import json
import struct

import numpy as np

from conftest import run_fp4z


def varint(buf, pos):
    value, shift = 0, 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, pos


def decode_stream(buf, pos, n):
    """One entropy stream of n symbols (§4.1); returns (bytes, position after it)."""
    mode = buf[pos]
    pos += 1
    if mode == 0:
        return bytes(buf[pos:pos + n]), pos + n
    if mode == 1:
        return bytes([buf[pos]]) * n, pos + 1
    assert mode in (2, 3), mode
    lanes = 32 if mode == 2 else 64
    present = [s for s in range(256) if buf[pos + (s >> 3)] >> (s & 7) & 1]
    pos += 32
    freq = {}
    for s in present:
        f1, pos = varint(buf, pos)
        freq[s] = f1 + 1
    assert sum(freq.values()) == 4096
    start, acc = {}, 0
    for s in present:
        start[s] = acc
        acc += freq[s]
    slot_symbol = []
    for s in present:
        slot_symbol += [s] * freq[s]
    x = list(struct.unpack_from(f"<{lanes}I", buf, pos))
    pos += 4 * lanes
    n_words, pos = varint(buf, pos)
    words = struct.unpack_from(f"<{n_words}H", buf, pos)
    pos += 2 * n_words
    out = bytearray(n)
    w = 0
    for i in range(n):
        lane = i % lanes
        xs = x[lane]
        slot = xs & 4095
        s = slot_symbol[slot]
        out[i] = s
        xs = freq[s] * (xs >> 12) + slot - start[s]
        if xs < 1 << 16:
            xs = (xs << 16) | words[w]
            w += 1
        x[lane] = xs
    assert w == n_words and all(v == 1 << 16 for v in x), "lanes not back at L or words left over"
    return bytes(out), pos


def read_container(path):
    """Header version, and per chunk (codec, payload, raw_size) in index order (§2–§5)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89FP4Z\r\n\x1a"
    version = struct.unpack_from("<HH", data, 8)
    index_offset, index_size = struct.unpack_from("<QQ", data, len(data) - 40)
    ix, pos = data[index_offset:index_offset + index_size], 0
    n_entries, pos = varint(ix, pos)
    for _ in range(n_entries):
        kind = ix[pos]
        path_len, pos = varint(ix, pos + 1)
        pos += path_len
        if kind == 0:
            _, pos = varint(ix, pos)
            _, pos = varint(ix, pos)
    n_chunks, pos = varint(ix, pos)
    chunks, offset = [], 16
    for _ in range(n_chunks):
        codec = ix[pos]
        payload_size, pos = varint(ix, pos + 2)
        raw_size, pos = varint(ix, pos)
        pos += 16
        chunks.append((codec, data[offset:offset + payload_size], raw_size))
        offset += payload_size
    assert offset == index_offset
    return version, chunks


def test_rans_chunks_decode_as_the_document_says(tmp_path):
    rng = np.random.default_rng(7)
    # Skewed FP4 code pairs (a 96 KiB tensor: one stream of 98304 symbols, above the 64 K of mode 3) and
    # a 6 KiB scale tensor (mode 2 or zstd: below 64 KiB chunks are also tried with zstd).
    p = np.array([8, 6, 5, 4, 3, 2, 1, 1, 2, 6, 5, 4, 3, 2, 1, 1], dtype=np.float64)
    codes = rng.choice(16, size=2 * 98304, p=p / p.sum()).astype(np.uint8)
    packed = (codes[0::2] | (codes[1::2] << 4)).astype(np.uint8)
    scales = rng.integers(0x30, 0x38, size=6144, dtype=np.uint8)
    tensors = [("layer.weight_packed", "U8", [384, 256], packed), ("layer.weight_scale", "F8_E4M3", [384, 16], scales)]
    header, at = {}, 0
    for name, dtype, shape, a in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [at, at + a.nbytes]}
        at += a.nbytes
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    src = tmp_path / "ckpt"
    src.mkdir()
    body = struct.pack("<Q", len(h)) + h + b"".join(a.tobytes() for *_, a in tensors)
    (src / "model.safetensors").write_bytes(body)
    run_fp4z("compress", src, "-o", tmp_path / "c.fp4z", "-q")

    version, chunks = read_container(tmp_path / "c.fp4z")
    assert version == (1, 1)
    restored, modes = b"", []
    for codec, payload, raw_size in chunks:
        if codec == 2:  # rans-bytes: one stream of raw_size symbols
            modes.append(payload[0])
            raw, end = decode_stream(payload, 0, raw_size)
            assert end == len(payload)
        elif codec == 0:
            raw = payload
        else:  # the zstd header segment: its decoded bytes are the file's, checked by length here
            raw = body[len(restored):len(restored) + raw_size]
        restored += raw
    assert restored == body
    assert 3 in modes, f"no 64-lane stream among the rans chunks (modes {modes})"
