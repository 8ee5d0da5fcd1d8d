// safetensors dtype names, element sizes and exact scalar conversions of 16-bit floats.
#pragma once
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

#include "common/half.h"

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
