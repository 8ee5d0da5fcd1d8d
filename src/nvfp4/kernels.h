// Row kernels of NVFP4 quantization (divide, round to E2M1, pack, error statistics), per ISA.
#pragma once
#include <cstddef>
#include <cstdint>

#include "common/cpu.h"
#include "nvfp4/scales.h"

namespace fp4z {

// Accumulated over rows; sq_err sums fl(fl(deq - w)^2) in double, deq = fl(E2M1 · S).
struct RowStats {
  double sq_err = 0;
  uint64_t zeros = 0;  // codes 0 and 8
  uint64_t small = 0;  // |value| <= 1: codes 0,1,2,8,9,10
  void add(const RowStats& o) { sq_err += o.sq_err; zeros += o.zeros; small += o.small; }
};

// Quantizes one row of `cols` weights (cols % 16 == 0) with per-block divisors S[cols/16]:
// X = fl(w / S), code = E2M1 round-half-even with sign from X < 0 (code 8 becomes 0 when
// canonical_zero), packed two per byte, even column in the low nibble. If st is non-null,
// adds the row's statistics. Every ISA produces identical bytes and identical statistics.
using QuantizeRowFn = void (*)(const float* w, size_t cols, const float* S, bool canonical_zero, uint8_t* packed,
                               RowStats* st);
// Statistics of already-packed codes against w, with deq = fl(E2M1[code] · S[block]) where S is
// the effective block scale (the same S the codes were quantized with).
using CodeStatsFn = void (*)(const uint8_t* packed, size_t cols, const float* S, const float* w, RowStats* st);

// compressed-tensors absmax block scales of one row (cols % 16 == 0, finite weights): per block
// s8 = absmax_block_scale(amax_b, gs, rounding) and the divisor S = fl(dec(s8) / gs); `rounding`
// is the source dtype's rounding of amax_b / 6.
using AbsmaxScalesRowFn = void (*)(const float* w, size_t cols, float gs, SourceRounding rounding, uint8_t* s8, float* S);

// Seed steps 6-8 for n blocks with finite desired scales D >= 0: s8 = seed_block_scale(D, g1),
// S1 = fl(dec(s8) / g1), and the report's ratio fl(S1 / max(S0, 1e-12)).
using SeedScalesFn = void (*)(const float* D, const float* S0, size_t n, float g1, uint8_t* s8, float* S1, float* ratio);

struct NvKernels {
  Isa isa;
  QuantizeRowFn quantize_row;
  CodeStatsFn code_stats;
  AbsmaxScalesRowFn absmax_scales_row;
  SeedScalesFn seed_scales;
};

// The kernels for `isa` (falls back to the best available below it).
const NvKernels& nv_kernels(Isa isa);

// The portable absmax block-scale kernel (shared by ISAs that do not specialise it).
void absmax_scales_row_portable(const float* w, size_t cols, float gs, SourceRounding rounding, uint8_t* s8, float* S);

void seed_scales_portable(const float* D, const float* S0, size_t n, float g1, uint8_t* s8, float* S1, float* ratio);

// Per-ISA tables (defined in kernels_*.cpp).
extern const NvKernels kNvKernelsScalar;
extern const NvKernels kNvKernelsAvx2;
extern const NvKernels kNvKernelsAvx512;

}  // namespace fp4z
