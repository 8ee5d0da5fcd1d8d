// NVFP4 element/scale codecs: E2M1 codes, E4M3FN block scales (RNE, subnormals), nibble packing.
// Scalar, header-only, and the single definition every other module (and every SIMD kernel's
// tests) agrees with. Facts: docs/nvfp4.md, ../shared/design/nvfp4-format.md §1-2.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace fp4z {

// Value of each 4-bit E2M1 code (bit 3 = sign).
inline constexpr float kE2M1Value[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                         -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

// Magnitude index (0..7) of |x| with round-half-to-even on the index and saturation at 6.
// Ties: 0.25->0, 0.75->1, 1.25->1, 1.75->2, 2.5->2, 3.5->4, 5->4. NaN -> 0.
inline uint8_t e2m1_magnitude_index(float a) {
  // Written as a sum of comparisons so that NaN (all false) gives 0 and so that it maps 1:1
  // onto the SIMD kernels (one compare-mask add per threshold).
  return uint8_t((a > 0.25f) + (a >= 0.75f) + (a > 1.25f) + (a >= 1.75f) + (a > 2.5f) + (a >= 3.5f) + (a > 5.0f));
}

// Code of a quotient X = w / scale: sign bit iff X < 0 (so -0.0 and NaN give +codes).
inline uint8_t e2m1_encode(float x) {
  return uint8_t((x < 0.0f ? 8 : 0) | e2m1_magnitude_index(std::fabs(x)));
}

// E4M3FN value of every byte (0x7F/0xFF are NaN), as a constexpr table.
struct E4M3Table {
  float v[256];
  constexpr E4M3Table() : v() {
    for (int b = 0; b < 256; ++b) {
      int e = (b >> 3) & 0xF, m = b & 7;
      float mag;
      if (e == 0) {
        mag = float(m) / 512.0f;
      } else {
        float p = 1.0f;
        for (int i = 7; i < e; ++i) p *= 2.0f;
        for (int i = e; i < 7; ++i) p /= 2.0f;
        mag = (1.0f + float(m) / 8.0f) * p;
      }
      if ((b & 0x7F) == 0x7F) mag = __builtin_nanf("");
      v[b] = (b & 0x80) ? -mag : mag;
    }
  }
};
inline constexpr E4M3Table kE4M3{};

inline float e4m3_decode(uint8_t b) { return kE4M3.v[b]; }

// float -> E4M3FN byte, round to nearest, ties to even mantissa, subnormals kept; |x| > 464 and
// NaN give the NaN pattern... . This is PyTorch's float8_e4m3fn cast.
inline uint8_t e4m3_encode_rne(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  uint8_t sign = uint8_t((bits >> 24) & 0x80);
  float a = std::fabs(x);
  if (!(a <= 464.0f)) return uint8_t(sign | 0x7F);  // NaN, inf, above 464 (464 ties to 448)
  if (a < 0.015625f) {                               // below 2^-6: multiples of 2^-9
    // a * 512 is exact (power-of-two scaling in range); round half to even on the integer.
    float q = a * 512.0f;
    float fl = std::floor(q);
    float frac = q - fl;
    int n = int(fl);
    if (frac > 0.5f || (frac == 0.5f && (n & 1))) ++n;
    return uint8_t(sign | n);  // n == 8 is exactly 2^-6 = 0x08
  }
  uint32_t ab;
  std::memcpy(&ab, &a, 4);
  // Keep 3 mantissa bits: round at bit 20 with ties to even.
  uint32_t lsb = (ab >> 20) & 1u;
  uint32_t r = ab + 0x7FFFFu + lsb;
  uint32_t e = (r >> 23) - 127 + 7;  // >= 1 here
  uint32_t m = (r >> 20) & 7u;
  uint8_t code = uint8_t((e << 3) | m);
  if (code > 0x7E) code = 0x7E;  // 448 < a < 464 rounds to 448 (464 itself ties to even=448)
  return uint8_t(sign | code);
}

// Packs codes (one per byte, values 0..15) two per byte, even index in the low nibble.
// Eight codes at a time within a 64-bit word: each even byte takes its odd neighbour as high nibble,
// then the even bytes are gathered (little-endian words; the rd pass packs every row with it).
inline void pack_nibbles(const uint8_t* codes, size_t n, uint8_t* out) {
  auto pack8 = [](uint64_t x) {
    x = (x | (x >> 4)) & 0x00FF00FF00FF00FFull;
    x = (x | (x >> 8)) & 0x0000FFFF0000FFFFull;
    return (x | (x >> 16)) & 0xFFFFFFFFull;
  };
  size_t j = 0;
  for (; j + 16 <= n; j += 16) {
    uint64_t a, b;
    std::memcpy(&a, codes + j, 8);
    std::memcpy(&b, codes + j + 8, 8);
    const uint64_t r = pack8(a) | (pack8(b) << 32);
    std::memcpy(out + j / 2, &r, 8);
  }
  for (; j + 1 < n; j += 2) out[j / 2] = uint8_t(codes[j] | (codes[j + 1] << 4));
  if (n & 1) out[n / 2] = codes[n - 1];
}
inline void unpack_nibbles(const uint8_t* packed, size_t n, uint8_t* codes) {
  for (size_t j = 0; j < n; ++j) codes[j] = (packed[j / 2] >> ((j & 1) * 4)) & 0xF;
}

}  // namespace fp4z
