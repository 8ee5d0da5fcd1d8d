// NumPy .npy (format 1.0) writer: magic, version, a padded Python-dict header, then the raw data.
#include "format/npy.h"

#include <cstring>

#include "common/error.h"

namespace fp4z {

std::string npy_f32(const std::vector<int64_t>& shape, const float* data) {
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  int64_t count = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    dict += std::to_string(shape[i]) + (shape.size() == 1 ? "," : i + 1 < shape.size() ? ", " : "");
    count *= shape[i];
  }
  dict += "), }";
  // Magic (6) + version (2) + header length (2) + header, padded with spaces and ending in '\n'
  // so that the data starts at a multiple of 64 bytes.
  size_t total = 10 + dict.size() + 1;
  dict.append((64 - total % 64) % 64, ' ');
  dict += '\n';
  if (dict.size() > 0xFFFF) fail_input("npy header too long");
  std::string out = std::string("\x93NUMPY\x01\x00", 8);
  out += char(dict.size() & 0xFF);
  out += char(dict.size() >> 8);
  out += dict;
  size_t bytes = size_t(count) * sizeof(float);
  size_t at = out.size();
  out.resize(at + bytes);
  if (bytes) std::memcpy(out.data() + at, data, bytes);  // x86-64 is little-endian, as '<f4' says
  return out;
}

}  // namespace fp4z
