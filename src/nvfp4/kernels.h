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

// Seed steps 6-13 depend on a block only through the template's scale code, so everything a block
// needs is tabulated per template scale code t (256 entries, computed with the scalar functions):
struct SeedCodeTables {
  float S0[256];      // template effective scale dec(t) / g_t (step 1)
  float S1[256];      // new effective scale dec(s8) / g1, s8 = seed_block_scale(D, g1) (steps 6-8)
  uint8_t s8[256];    // the new block scale code
  float ratio[256];   // the report's block ratio fl(S1 / max(S0, 1e-12))
  float cut[256][8];  // e2m1_cutoffs(S1): the quantizer's comparisons without the division
};
// Entries of codes with present[c] false (present may be null: all) are left as placeholders.
void fill_seed_code_tables(const float S0_of[256], const float D_of[256], const bool* present, float g1, SeedCodeTables& t);

// For a divisor S: cut[0] = the smallest f32 a >= 0 with fl(a / S) > 0, cut[k] (k = 1..7) the smallest
// with e2m1_magnitude_index(fl(a / S)) >= k; NaN where no a qualifies. fl(a / S) is nondecreasing in
// a, so for every f32 w: magnitude index of fl(|w| / S) = #{k >= 1 : |w| >= cut[k]} (NaN: 0), and
// fl(w / S) < 0 iff w's sign bit is set and |w| >= cut[0] (S >= 0 or NaN, as seed scales are).
void e2m1_cutoffs(float S, float cut[8]);

// Seed steps 9-13 of one row: quantizes the row (f32, or BF16 bit patterns when `bf16`) with the
// scales S1 of its template scale codes `tscale` [cols/16] into `packed`, and measures both the new
// codes and the template's codes `tpacked` against it. *sq_new and *sq_base get the row's squared
// error sums exactly as quantize_row and code_stats compute them (same order: identical bits).
using SeedRowFn = void (*)(const void* w, bool bf16, size_t cols, const uint8_t* tscale, const uint8_t* tpacked,
                           const SeedCodeTables& t, bool canonical_zero, uint8_t* packed, double* sq_new, double* sq_base);

struct NvKernels {
  Isa isa;
  QuantizeRowFn quantize_row;
  CodeStatsFn code_stats;
  AbsmaxScalesRowFn absmax_scales_row;
  SeedScalesFn seed_scales;
  SeedRowFn seed_row;
};

// seed_row through an ISA's quantize_row and code_stats (row and scales expanded to f32 first).
void seed_row_via(QuantizeRowFn quantize_row, CodeStatsFn code_stats, const void* w, bool bf16, size_t cols,
                  const uint8_t* tscale, const uint8_t* tpacked, const SeedCodeTables& t, bool canonical_zero,
                  uint8_t* packed, double* sq_new, double* sq_base);

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
