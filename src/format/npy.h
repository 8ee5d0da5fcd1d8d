// NumPy .npy (format 1.0) writer for little-endian float32 arrays, so results drop into numpy/torch unchanged.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace fp4z {

// The complete .npy file holding `data` (C order) with the given shape, dtype '<f4'.
std::string npy_f32(const std::vector<int64_t>& shape, const float* data);

}  // namespace fp4z
