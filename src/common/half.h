// Exact conversions between f32 and the 16-bit float formats (BF16, IEEE half), round to nearest even.
#pragma once
#include <cstdint>
#include <cstring>

namespace fp4z {

inline float f32_from_bits(uint32_t b) { float f; std::memcpy(&f, &b, 4); return f; }
inline uint32_t bits_from_f32(float f) { uint32_t b; std::memcpy(&b, &f, 4); return b; }

inline float bf16_to_f32(uint16_t h) { return f32_from_bits(uint32_t(h) << 16); }
// Round-to-nearest-even f32 -> bf16; NaN stays NaN (quiet).
inline uint16_t f32_to_bf16_rne(float f) {
  uint32_t b = bits_from_f32(f);
  if ((b & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((b >> 16) | 0x40);
  b += 0x7FFFu + ((b >> 16) & 1u);
  return uint16_t(b >> 16);
}
// Exact IEEE half -> f32, subnormals included.
inline float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1Fu;
  uint32_t man = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {
      int e = -1;
      do { man <<= 1; ++e; } while (!(man & 0x400u));
      bits = sign | uint32_t(127 - 15 - e) << 23 | (man & 0x3FFu) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | man << 13;
  } else {
    bits = sign | (exp + 112u) << 23 | man << 13;
  }
  return f32_from_bits(bits);
}
// Round-to-nearest-even f32 -> IEEE half (overflow to inf, subnormals kept).
uint16_t f32_to_f16_rne(float f);

}  // namespace fp4z
