// Round-to-nearest-even f32 -> IEEE half conversion.
#include "common/half.h"

#include <cmath>

namespace fp4z {

uint16_t f32_to_f16_rne(float f) {
  uint32_t b = bits_from_f32(f);
  uint16_t sign = uint16_t((b >> 16) & 0x8000u);
  uint32_t a = b & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return sign | 0x7E00u;
  if (a >= 0x477FF000u) return sign | 0x7C00u;  // rounds to >= 65520 -> inf
  if (a < 0x38800000u) {                        // below 2^-14: subnormal half
    // value = a as float; half subnormal unit is 2^-24.
    float v = f32_from_bits(a) * 16777216.0f;    // exact scaling by 2^24
    float r = std::nearbyint(v);                 // RNE in default rounding mode
    return sign | uint16_t(r);
  }
  uint32_t rounded = a + 0xFFFu + ((a >> 13) & 1u);
  return sign | uint16_t((rounded >> 13) - (112u << 10));
}

}  // namespace fp4z
