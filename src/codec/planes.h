// Byte-plane transforms of 16-bit floats (BF16: exponent | sign+mantissa), scalar and AVX-512.
#pragma once
#include <cstddef>
#include <cstdint>

#include "common/cpu.h"

namespace fp4z::codec {

inline void split_bf16_scalar(const uint8_t* raw, size_t m, uint8_t* exp, uint8_t* sm) {
  for (size_t i = 0; i < m; ++i) {
    uint32_t v = uint32_t(raw[2 * i]) | uint32_t(raw[2 * i + 1]) << 8;
    exp[i] = uint8_t(v >> 7);
    sm[i] = uint8_t(((v >> 8) & 0x80) | (v & 0x7F));
  }
}
inline void merge_bf16_scalar(const uint8_t* exp, const uint8_t* sm, size_t m, uint8_t* out) {
  for (size_t i = 0; i < m; ++i) {
    uint32_t v = (uint32_t(sm[i] & 0x80) << 8) | (uint32_t(exp[i]) << 7) | (sm[i] & 0x7F);
    out[2 * i] = uint8_t(v);
    out[2 * i + 1] = uint8_t(v >> 8);
  }
}
void split_bf16_avx512(const uint8_t* raw, size_t m, uint8_t* exp, uint8_t* sm);
void merge_bf16_avx512(const uint8_t* exp, const uint8_t* sm, size_t m, uint8_t* out);

using SplitFn = void (*)(const uint8_t*, size_t, uint8_t*, uint8_t*);
using MergeFn = void (*)(const uint8_t*, const uint8_t*, size_t, uint8_t*);

}  // namespace fp4z::codec
