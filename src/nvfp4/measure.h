// Measurements of NVFP4 codes shared by stats, compare and the quantizers: the effective block scale,
// the code histogram, the order-0 entropy and the one MSE formula (against source weights supplied row
// by row), and the numeric scan of block scales.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>

#include "nvfp4/codec.h"
#include "nvfp4/kernels.h"

namespace fp4z {

// The scale each code of a block is multiplied by: dec(s8) / g for a divisor global scale
// (compressed-tensors weight_global_scale), dec(s8) * g for a multiplier (ModelOpt weight_scale_2).
inline float effective_block_scale(uint8_t s8, float global, bool global_is_divisor) {
  return global_is_divisor ? e4m3_decode(s8) / global : e4m3_decode(s8) * global;
}

// Adds the count of each 4-bit code of `nbytes` packed bytes (both nibbles) to hist: the one code
// histogram (stats, compare, rd's Nvfp4Histogram).
void count_codes(const uint8_t* packed, size_t nbytes, uint64_t hist[16]);
// Adds the codes of byte counts (bytes[v] bytes of value v hold codes v & 15 and v >> 4) to hist.
void add_code_counts(const uint64_t bytes[256], uint64_t hist[16]);

// The one order-0 (plug-in) entropy: bits per symbol of counts[0..n), 0 when every count is 0.
double entropy_bits(const uint64_t* counts, int n);

// The one MSE formula: sq_err / numel accumulated in double, reported rounded to f32 (as the seed report).
inline double mse_of(const RowStats& st, uint64_t numel) {
  return numel ? double(float(st.sq_err / double(numel))) : 0.0;
}

// An NVFP4 weight matrix [rows, cols] (cols % 16 == 0) as stored.
struct PackedWeights {
  const uint8_t* codes = nullptr;   // [rows, cols / 2]
  const uint8_t* scales = nullptr;  // [rows, cols / 16] E4M3
  size_t rows = 0, cols = 0;
  float global = 1;
  bool global_is_divisor = true;
};

// Error statistics of the dequantized weights fl(E2M1 · S) against the source, whose row r the
// callback writes as f32 into its second argument. Rows are split in fixed groups of 16 and summed
// in order, so the result does not depend on `threads`.
using LoadRowFn = std::function<void(size_t row, float* out)>;
RowStats packed_error_stats(const PackedWeights& w, const LoadRowFn& load_row, int threads);

}  // namespace fp4z

namespace fp4z {

// Numeric scan of E4M3 block scales [rows, groups]: NaN bytes (0x7F/0xFF), negative scales, and
// zero scales whose block still holds nonzero codes (when `packed` [rows, groups * 8] is given).
// `first_*` is the first offending block (row * groups + group), UINT64_MAX when none.
struct BlockScaleScan {
  uint64_t nan = 0, negative = 0, zero_nonzero_codes = 0;
  uint64_t first_nan = UINT64_MAX, first_negative = UINT64_MAX, first_zero = UINT64_MAX;
};
BlockScaleScan scan_block_scales(const uint8_t* scales, const uint8_t* packed, size_t rows, size_t groups, int threads);

}  // namespace fp4z
