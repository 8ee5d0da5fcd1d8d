// Pieces of the rd block decision shared by the scalar and the AVX-512 kernels (not a public API).
#pragma once
#include <algorithm>
#include <cstdint>

#include "nvfp4/codec.h"
#include "nvfp4/rd.h"

namespace fp4z::rd_detail {

inline constexpr float kMagnitude[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

// The absmax byte b0 of a block with absmax amax > 0.
inline int absmax_byte(float amax, float gs) {
  return std::max<int>(1, e4m3_encode_rne(std::min(amax / 6.0f * gs, 448.0f)));
}

// A block whose decision has no candidate to compare: byte b, codes 0, squared error of all-zero codes.
inline uint8_t fixed_block(const float* w, uint8_t b, uint8_t* codes, double* sq_err) {
  std::fill(codes, codes + 16, uint8_t(0));
  if (sq_err) {
    double d[16];
    for (int j = 0; j < 16; ++j) d[j] = double(w[j]) * double(w[j]);
    for (int h = 8; h >= 1; h /= 2)
      for (int j = 0; j < h; ++j) d[j] += d[j + h];
    *sq_err += d[0];
  }
  return b;
}

}  // namespace fp4z::rd_detail
