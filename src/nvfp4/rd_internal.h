// Pieces of the rd block decision shared by the scalar and the AVX-512 kernels (not a public API).
#pragma once
#include <algorithm>
#include <cstdint>

#include "nvfp4/codec.h"
#include "nvfp4/rd.h"

namespace fp4z::rd_detail {

inline constexpr float kMagnitude[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

// The vector kernels find lo (the number of nonzero magnitudes <= a) from a's bits: the lo index
// w' = clamp(2·exponent(a) + first mantissa bit − 251, 0, 15) (0 below 0.5, then one per half-octave:
// 1 and 2 on [0.5, 1), 3 on [1, 1.5), ..., 8 on [6, 8), 15 from 64 on), plus 16 for w < 0.
// kCandidate[c][w'] is the code index (magnitude | 8 for w < 0) of candidate c = 0 (lo − 1), 1 (lo),
// 2 (lo + 1), clipped to 0..7.
alignas(64) inline constexpr int32_t kCandidate[3][32] = {
    {0, 0, 0, 1, 2, 3, 4, 5, 6, 6, 6, 6, 6, 6, 6, 6, 8, 8, 8, 9, 10, 11, 12, 13, 14, 14, 14, 14, 14, 14, 14, 14},
    {0, 1, 1, 2, 3, 4, 5, 6, 7, 7, 7, 7, 7, 7, 7, 7, 8, 9, 9, 10, 11, 12, 13, 14, 15, 15, 15, 15, 15, 15, 15, 15},
    {1, 2, 2, 3, 4, 5, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 9, 10, 10, 11, 12, 13, 14, 15, 15, 15, 15, 15, 15, 15, 15, 15}};

// A block may skip the lo − 1 candidate when its weights are unweighted (wt = 1), no byte in its
// candidate range needs it (RdPrepared::need_below) and a = fl(amax·R) of its smallest candidate is
// below this bound (so that every lane's a is, and the bound of rd_prepare holds).
inline constexpr float kPruneMaxA = 48.0f;

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
