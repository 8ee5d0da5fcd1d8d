// safetensors dtype names, element sizes and exact scalar conversions of 16-bit floats.
#pragma once
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

namespace fp4z {

enum class DType : uint8_t {
  BOOL, U8, I8, U16, I16, U32, I32, U64, I64, F16, BF16, F32, F64, F8_E4M3, F8_E5M2, F8_E8M0,
};

// Parses a safetensors dtype string; nullopt if unknown (sub-byte F4/F6 types are refused).
std::optional<DType> dtype_from_string(const std::string& s);
const char* dtype_name(DType d);
// Bytes per element.
unsigned dtype_size(DType d);
inline bool dtype_is_float_weight(DType d) { return d == DType::F16 || d == DType::BF16 || d == DType::F32; }

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

// Reads element i of a float tensor of dtype d (F16/BF16/F32) as f32, exactly.
inline float load_float(const uint8_t* p, DType d, size_t i) {
  switch (d) {
    case DType::BF16: { uint16_t h; std::memcpy(&h, p + 2 * i, 2); return bf16_to_f32(h); }
    case DType::F16: { uint16_t h; std::memcpy(&h, p + 2 * i, 2); return f16_to_f32(h); }
    default: { float f; std::memcpy(&f, p + 4 * i, 4); return f; }
  }
}

// Converts n elements of a F16/BF16/F32 buffer to f32 (exact; vectorised where possible).
void convert_to_f32(const uint8_t* src, DType d, size_t n, float* dst);

}  // namespace fp4z
