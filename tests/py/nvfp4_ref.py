# Reference NVFP4 number formats (BF16 RNE, E4M3FN, E2M1) written from the design notes, in numpy.
"""Every f32 operation in the oracles is one numpy float32 operation on float32 operands
(numpy never contracts to FMA and never flushes subnormals). Helpers here are exact by construction:
they work on integer bit patterns or on float64 values that hold f32/f8 values exactly.
"""
import re

import numpy as np

F32 = np.float32

# E2M1 code -> value (code 8 is negative zero)
E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], dtype=np.float32)


# ---------------------------------------------------------------- BF16 / F16 / F32 sources

def bf16_bits_to_f32(bits):
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def f32_to_bf16_bits(x):
    """Round f32 to BF16, nearest with ties to even, with integer operations (finite inputs and inf)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    r = (u + np.uint64(0x7FFF) + ((u >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)
    r = r.astype(np.uint16)
    if nan.any():
        r = np.where(nan, ((u >> np.uint64(16)) | np.uint64(0x40)).astype(np.uint16), r)
    return r


def rnd_bf16(x):
    """f32 -> nearest BF16 value (RNE), returned as f32."""
    return bf16_bits_to_f32(f32_to_bf16_bits(x))


def rnd_f16(x):
    # numpy's float32 -> float16 conversion rounds to nearest even, subnormals included
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


def rnd_src(x, dtype):
    if dtype == "BF16":
        return rnd_bf16(x)
    if dtype == "F16":
        return rnd_f16(x)
    if dtype == "F32":
        return np.asarray(x, dtype=np.float32)
    raise ValueError(dtype)


def storage_to_f32(arr, dtype):
    """Source tensor in storage type -> exact f32 values."""
    if dtype == "BF16":
        return bf16_bits_to_f32(arr)
    if dtype == "F16":
        return np.asarray(arr).astype(np.float32)
    if dtype == "F32":
        return np.asarray(arr, dtype=np.float32)
    raise ValueError(f"unsupported source dtype {dtype}")


def f32_to_storage(x, dtype):
    if dtype == "BF16":
        return f32_to_bf16_bits(x)
    if dtype == "F16":
        return np.asarray(x, dtype=np.float32).astype(np.float16)
    if dtype == "F32":
        return np.asarray(x, dtype=np.float32)
    raise ValueError(dtype)


# ---------------------------------------------------------------- float8_e4m3fn

def _e4m3_decode_one(b):
    s = -1.0 if b & 0x80 else 1.0
    e = (b >> 3) & 0xF
    m = b & 7
    if e == 15 and m == 7:
        return float("nan")
    if e == 0:
        return s * m * 2.0 ** -9
    return s * (1 + m / 8) * 2.0 ** (e - 7)


E4M3_DECODE = np.array([_e4m3_decode_one(b) for b in range(256)], dtype=np.float32)


def e4m3_decode(bytes_):
    return E4M3_DECODE[np.asarray(bytes_, dtype=np.uint8)]


def e4m3_encode(x):
    """f32 -> float8_e4m3fn byte: nearest, ties to even mantissa, subnormals kept, > 464 -> NaN (0x7F)."""
    x = np.asarray(x, dtype=np.float32)
    a = np.abs(x).astype(np.float64)  # exact
    sign = np.where(np.signbit(x), 0x80, 0).astype(np.int64)
    out = np.zeros(x.shape, dtype=np.int64)
    # subnormal range: a < 2^-6 -> multiple of 2^-9, RNE (m == 8 is exactly the min normal 0x08)
    sub = a < 2.0 ** -6
    out = np.where(sub, np.rint(a * 2.0 ** 9).astype(np.int64) if a.size else out, out)
    # normal range
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        _, e2 = np.frexp(np.where(sub | ~np.isfinite(a), 1.0, a))  # a = f * 2^e2, f in [0.5, 1)
        exp = e2.astype(np.int64) - 1  # a = (1.xxx) * 2^exp
        mant = np.rint(np.ldexp(np.where(sub | ~np.isfinite(a), 1.0, a), -exp) * 8.0).astype(np.int64) - 8
    carry = mant == 8
    exp = np.where(carry, exp + 1, exp)
    mant = np.where(carry, 0, mant)
    ef = exp + 7
    normal_code = (ef << 3) | mant
    too_big = (ef > 15) | ((ef == 15) & (mant == 7)) | ~np.isfinite(a)
    normal_code = np.where(too_big, 0x7F, normal_code)
    out = np.where(sub, out, normal_code)
    return (out | sign).astype(np.uint8)


# ---------------------------------------------------------------- E2M1

def e2m1_mag_index(a):
    """abs(X) in f32 -> magnitude index 0..7, round half to even on the grid (NaN -> 0)."""
    a = np.asarray(a, dtype=np.float32)
    idx = np.zeros(a.shape, dtype=np.uint8)
    idx = np.where((a > F32(0.25)) & (a < F32(0.75)), 1, idx)
    idx = np.where((a >= F32(0.75)) & (a <= F32(1.25)), 2, idx)
    idx = np.where((a > F32(1.25)) & (a < F32(1.75)), 3, idx)
    idx = np.where((a >= F32(1.75)) & (a <= F32(2.5)), 4, idx)
    idx = np.where((a > F32(2.5)) & (a < F32(3.5)), 5, idx)
    idx = np.where((a >= F32(3.5)) & (a <= F32(5.0)), 6, idx)
    idx = np.where(a > F32(5.0), 7, idx)  # includes +inf; NaN compares false everywhere -> 0
    return idx.astype(np.uint8)


def e2m1_codes(X):
    """Code = 8*[X < 0] + mag(abs(X)); -0.0 and NaN give the +0 sign."""
    X = np.asarray(X, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        neg = (X < F32(0)).astype(np.uint8)
    return (neg * 8 + e2m1_mag_index(np.abs(X))).astype(np.uint8)


def pack_codes(codes):
    """[R, C] codes -> [R, C/2] bytes, even column in the low nibble."""
    c = np.asarray(codes, dtype=np.uint8)
    return (c[:, 0::2] | (c[:, 1::2] << 4)).astype(np.uint8)


def unpack_codes(packed):
    p = np.asarray(packed, dtype=np.uint8)
    out = np.empty((p.shape[0], p.shape[1] * 2), dtype=np.uint8)
    out[:, 0::2] = p & 0xF
    out[:, 1::2] = p >> 4
    return out


def f32_bytes_hex(v):
    return np.array([v], dtype="<f4").tobytes().hex()


# ---------------------------------------------------------------- self test against the notes' goldens

def self_test():
    # nvfp4-format.md §1/§2.5 and seed-method.md §3.2
    goldens = [(448, 0x7E), (464, 0x7E), (224, 0x76), (300, 0x79), (17, 0x58), (1.0625, 0x38),
               (0.125, 0x20), (2.0 ** -6, 0x08), (7.5 * 2 ** -9, 0x08), (1.5 * 2 ** -9, 0x02),
               (2.5 * 2 ** -9, 0x02), (0.5 * 2 ** -9, 0x00), (2.0 ** -9, 0x01)]
    for v, b in goldens:
        got = int(e4m3_encode(np.float32(v)))
        assert got == b, (v, hex(got), hex(b))
    assert E4M3_DECODE[0x79] == 288 and E4M3_DECODE[0x7E] == 448 and E4M3_DECODE[0x58] == 16
    assert E4M3_DECODE[0x01] == 2.0 ** -9 and E4M3_DECODE[0x08] == 2.0 ** -6
    assert int(e4m3_encode(np.float32(465))) == 0x7F
    # every non-NaN byte round-trips
    for b in range(256):
        if b & 0x7F == 0x7F:
            assert np.isnan(E4M3_DECODE[b])
            continue
        assert int(e4m3_encode(E4M3_DECODE[b])) == b, hex(b)
    # packing goldens
    assert pack_codes(np.array([[0, 1, 2, 3, 8, 9, 10, 15]])).tobytes().hex() == "103298fa"
    assert pack_codes(np.array([[9, 15, 9, 11, 10, 7, 0, 8]])).tobytes().hex() == "f9b97a80"
    # E2M1 ties
    X = np.array([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 6, 7, np.inf, -0.25, -0.0, np.nan, -0.26, -5.01],
                 dtype=np.float32)
    assert list(e2m1_codes(X)) == [0, 2, 2, 4, 4, 6, 6, 7, 7, 7, 8, 0, 0, 9, 15], list(e2m1_codes(X))
    # BF16 RNE
    assert rnd_bf16(np.float32(1) / np.float32(3)) == np.float32(0.333984375)
    assert rnd_bf16(np.float32(897.75)) == 896.0
    assert f32_bytes_hex(896.0) == "00006044"
    assert rnd_bf16(np.float32(3.4e38)) == np.inf
    # global scale golden: amax 3.0 -> 896
    r = rnd_bf16(F32(1) / F32(3.0))
    assert rnd_bf16(r * F32(2688)) == F32(896.0)
    print("nvfp4_ref self-test OK")


if __name__ == "__main__":
    self_test()


def fused_group_key(prefix):
    """Key shared by the members of a fused group (q/k/v of one attention, gate/up of one MLP), else None."""
    m = re.match(r"(.*\.self_attn)\.(q_proj|k_proj|v_proj)$", prefix)
    if m:
        return m.group(1) + ".qkv"
    m = re.match(r"(.*\.mlp)\.(gate_proj|up_proj)$", prefix)
    if m:
        return m.group(1) + ".gate_up"
    return None
