// Portable reference implementation of the NVFP4 row kernels; SIMD kernels must match it bit for bit.
#include "nvfp4/codec.h"
#include "nvfp4/kernels.h"
#include "nvfp4/scales.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace fp4z {

namespace {

// Squared errors are summed in a fixed order shared by every ISA: lane i (0..7) of a row
// accumulates double(e[i]) + double(e[i+8]) of each block, then lanes are added 0..7.
struct ErrLanes {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  void add_block(const float* sq) {
    for (int i = 0; i < 8; ++i) lane[i] += double(sq[i]) + double(sq[i + 8]);
  }
  double total() const {
    double t = 0;
    for (int i = 0; i < 8; ++i) t += lane[i];
    return t;
  }
};

void quantize_row_scalar(const float* w, size_t cols, const float* S, bool canonical_zero, uint8_t* packed, RowStats* st) {
  ErrLanes err;
  RowStats local;
  for (size_t b = 0; b < cols / 16; ++b) {
    const float s = S[b];
    uint8_t codes[16];
    float sq[16];
    for (int i = 0; i < 16; ++i) {
      float x = w[16 * b + i] / s;
      uint8_t idx = e2m1_magnitude_index(std::fabs(x));
      uint8_t c = uint8_t(((x < 0.0f) ? 8 : 0) | idx);
      if (canonical_zero && c == 8) c = 0;
      codes[i] = c;
      float d = kE2M1Value[c] * s - w[16 * b + i];
      sq[i] = d * d;
      local.zeros += idx == 0;
      local.small += idx <= 2;
    }
    if (st) err.add_block(sq);
    for (int j = 0; j < 8; ++j) packed[8 * b + j] = uint8_t(codes[2 * j] | (codes[2 * j + 1] << 4));
  }
  if (st) {
    local.sq_err = err.total();
    st->add(local);
  }
}

void code_stats_scalar(const uint8_t* packed, size_t cols, const float* S, const float* w, RowStats* st) {
  ErrLanes err;
  RowStats local;
  for (size_t b = 0; b < cols / 16; ++b) {
    float sq[16];
    for (int i = 0; i < 16; ++i) {
      size_t c = 16 * b + i;
      uint8_t code = (packed[c / 2] >> ((c & 1) * 4)) & 0xF;
      float d = kE2M1Value[code] * S[b] - w[c];
      sq[i] = d * d;
      local.zeros += (code & 7) == 0;
      local.small += (code & 7) <= 2;
    }
    err.add_block(sq);
  }
  local.sq_err = err.total();
  st->add(local);
}

}  // namespace

void absmax_scales_row_portable(const float* w, size_t cols, float gs, SourceRounding rnd, uint8_t* s8, float* S) {
  for (size_t b = 0; b < cols / 16; ++b) {
    float amax_b = 0;
    for (int j = 0; j < 16; ++j) amax_b = std::max(amax_b, std::fabs(w[16 * b + j]));
    s8[b] = absmax_block_scale(amax_b, gs, rnd);
    S[b] = e4m3_decode(s8[b]) / gs;
  }
}

void seed_scales_portable(const float* D, const float* S0, size_t n, float g1, uint8_t* s8, float* S1, float* ratio) {
  for (size_t i = 0; i < n; ++i) {
    s8[i] = seed_block_scale(D[i], g1);
    S1[i] = e4m3_decode(s8[i]) / g1;
    ratio[i] = S1[i] / std::max(S0[i], 1e-12f);
  }
}

void seed_row_via(QuantizeRowFn quantize_row, CodeStatsFn code_stats, const void* w, bool bf16, size_t cols,
                  const uint8_t* tscale, const uint8_t* tpacked, const SeedCodeTables& t, bool canonical_zero,
                  uint8_t* packed, double* sq_new, double* sq_base) {
  thread_local std::vector<float> row, S1, S0;
  const size_t nb = cols / 16;
  row.resize(cols);
  S1.resize(nb);
  S0.resize(nb);
  const float* wf = static_cast<const float*>(w);
  if (bf16) {
    const uint16_t* h = static_cast<const uint16_t*>(w);
    for (size_t i = 0; i < cols; ++i) {
      uint32_t bits = uint32_t(h[i]) << 16;
      std::memcpy(&row[i], &bits, 4);
    }
    wf = row.data();
  }
  for (size_t b = 0; b < nb; ++b) {
    S1[b] = t.S1[tscale[b]];
    S0[b] = t.S0[tscale[b]];
  }
  RowStats st_new, st_base;
  quantize_row(wf, cols, S1.data(), canonical_zero, packed, &st_new);
  code_stats(tpacked, cols, S0.data(), wf, &st_base);
  *sq_new = st_new.sq_err;
  *sq_base = st_base.sq_err;
}

void e2m1_cutoffs(float S, float cut[8]) {
  // Bisection over the bit patterns of [0, +inf] (ordered like the values) with the real division,
  // so every rounding and special case (S = 0: a / 0 = inf; S = inf or NaN: never) is the
  // quantizer's own.
  auto passes = [&](uint32_t bits, int k) {
    float a;
    std::memcpy(&a, &bits, 4);
    float x = a / S;
    return k == 0 ? x > 0.0f : e2m1_magnitude_index(x) >= k;
  };
  for (int k = 0; k < 8; ++k) {
    uint32_t lo = 0, hi = 0x7F800000u;  // the answer is in [lo, hi] if hi passes
    if (!passes(hi, k)) {
      cut[k] = std::nanf("");
      continue;
    }
    while (lo < hi) {
      uint32_t mid = lo + (hi - lo) / 2;
      if (passes(mid, k)) hi = mid;
      else lo = mid + 1;
    }
    std::memcpy(&cut[k], &lo, 4);
  }
}

void fill_seed_code_tables(const float S0_of[256], const float D_of[256], const bool* present, float g1, SeedCodeTables& t) {
  for (int c = 0; c < 256; ++c) {
    float S1 = 0, ratio = 0;
    if (present && !present[c]) {
      t.S0[c] = t.S1[c] = t.ratio[c] = 0;
      t.s8[c] = 0;
      for (float& x : t.cut[c]) x = std::nanf("");
      continue;
    }
    t.S0[c] = S0_of[c];
    seed_scales_portable(&D_of[c], &S0_of[c], 1, g1, &t.s8[c], &S1, &ratio);
    t.S1[c] = S1;
    t.ratio[c] = ratio;
    e2m1_cutoffs(S1, t.cut[c]);
  }
}

namespace {

void seed_row_scalar(const void* w, bool bf16, size_t cols, const uint8_t* tscale, const uint8_t* tpacked,
                     const SeedCodeTables& t, bool canonical_zero, uint8_t* packed, double* sq_new, double* sq_base) {
  seed_row_via(quantize_row_scalar, code_stats_scalar, w, bf16, cols, tscale, tpacked, t, canonical_zero, packed, sq_new,
               sq_base);
}

}  // namespace

const NvKernels kNvKernelsScalar = {Isa::kScalar, quantize_row_scalar, code_stats_scalar, absmax_scales_row_portable,
                                    seed_scales_portable, seed_row_scalar};

const NvKernels& nv_kernels(Isa isa) {
  if (isa == Isa::kAvx512) return kNvKernelsAvx512;
  if (isa == Isa::kAvx2) return kNvKernelsAvx2;
  return kNvKernelsScalar;
}

}  // namespace fp4z
