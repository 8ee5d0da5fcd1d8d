// safetensors dtype names, element sizes and 16-bit float conversions.
#include "format/dtype.h"

#include <cmath>

namespace fp4z {

namespace {
struct DTypeName { DType d; const char* name; unsigned size; };
constexpr DTypeName kNames[] = {
    {DType::BOOL, "BOOL", 1}, {DType::U8, "U8", 1},      {DType::I8, "I8", 1},
    {DType::U16, "U16", 2},   {DType::I16, "I16", 2},    {DType::U32, "U32", 4},
    {DType::I32, "I32", 4},   {DType::U64, "U64", 8},    {DType::I64, "I64", 8},
    {DType::F16, "F16", 2},   {DType::BF16, "BF16", 2},  {DType::F32, "F32", 4},
    {DType::F64, "F64", 8},   {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
    {DType::F8_E8M0, "F8_E8M0", 1},
};
}  // namespace

std::optional<DType> dtype_from_string(const std::string& s) {
  for (const auto& n : kNames)
    if (s == n.name) return n.d;
  return std::nullopt;
}

const char* dtype_name(DType d) {
  for (const auto& n : kNames)
    if (n.d == d) return n.name;
  return "?";
}

unsigned dtype_size(DType d) {
  for (const auto& n : kNames)
    if (n.d == d) return n.size;
  return 0;
}

void convert_to_f32(const uint8_t* src, DType d, size_t n, float* dst) {
  switch (d) {
    case DType::BF16: {
      // Written as a plain widening shift over 32-bit words so the compiler vectorises it.
      uint32_t* out = reinterpret_cast<uint32_t*>(dst);
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        out[i] = uint32_t(h) << 16;
      }
      break;
    }
    case DType::F16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = f16_to_f32(h);
      }
      break;
    default:
      std::memcpy(dst, src, 4 * n);
      break;
  }
}

}  // namespace fp4z
