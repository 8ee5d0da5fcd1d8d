// AVX2 NVFP4 row kernels: a 16-element block as two ymm registers; bit-identical to the scalar path.
#include <immintrin.h>

#include "nvfp4/codec.h"
#include "nvfp4/kernels.h"

namespace fp4z {

namespace {

// Magnitude index of |x| (8 lanes): each comparison yields -1 where true, so subtracting it counts.
inline __m256i magnitude_index(__m256 a) {
  __m256i idx = _mm256_setzero_si256();
  auto step = [&](float t, int pred) {
    __m256 m = pred == 0 ? _mm256_cmp_ps(a, _mm256_set1_ps(t), _CMP_GT_OQ) : _mm256_cmp_ps(a, _mm256_set1_ps(t), _CMP_GE_OQ);
    idx = _mm256_sub_epi32(idx, _mm256_castps_si256(m));
  };
  step(0.25f, 0); step(0.75f, 1); step(1.25f, 0); step(1.75f, 1); step(2.5f, 0); step(3.5f, 1); step(5.0f, 0);
  return idx;
}

// Codes of lanes 0..7 and 8..15 (int32) -> 8 packed bytes.
inline uint64_t pack16(__m256i lo, __m256i hi) {
  __m256i w16 = _mm256_packus_epi32(lo, hi);                  // per 128-bit lane: lo0-3 hi0-3 | lo4-7 hi4-7
  w16 = _mm256_permute4x64_epi64(w16, 0xD8);                  // lo0-7 hi0-7 as u16
  __m128i b = _mm_packus_epi16(_mm256_castsi256_si128(w16), _mm256_extracti128_si256(w16, 1));  // 16 bytes
  __m128i v = _mm_or_si128(b, _mm_srli_epi16(b, 4));
  v = _mm_and_si128(v, _mm_set1_epi16(0x00FF));
  v = _mm_packus_epi16(v, v);
  return uint64_t(_mm_cvtsi128_si64(v));
}

inline __m256 lookup(__m256i code) {
  // E2M1 value = magnitude table (permutevar over 8 entries) with the sign bit from bit 3.
  const __m256 mags = _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f);
  __m256 v = _mm256_permutevar8x32_ps(mags, _mm256_and_si256(code, _mm256_set1_epi32(7)));
  __m256i sign = _mm256_slli_epi32(_mm256_srli_epi32(code, 3), 31);
  return _mm256_or_ps(v, _mm256_castsi256_ps(sign));
}

struct Err {
  __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();  // lanes 0-3, 4-7
  void add(__m256 sq_lo, __m256 sq_hi) {
    a0 = _mm256_add_pd(a0, _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(sq_lo)), _mm256_cvtps_pd(_mm256_castps256_ps128(sq_hi))));
    a1 = _mm256_add_pd(a1, _mm256_add_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(sq_lo, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(sq_hi, 1))));
  }
  double total() const {
    alignas(32) double l[8];
    _mm256_store_pd(l, a0);
    _mm256_store_pd(l + 4, a1);
    double t = 0;
    for (int i = 0; i < 8; ++i) t += l[i];
    return t;
  }
};

inline unsigned count_mask(__m256i m) { return unsigned(__builtin_popcount(_mm256_movemask_ps(_mm256_castsi256_ps(m)))); }

void quantize_row_avx2(const float* w, size_t cols, const float* S, bool canonical_zero, uint8_t* packed, RowStats* st) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  const __m256i eight = _mm256_set1_epi32(8), two = _mm256_set1_epi32(2), zero = _mm256_setzero_si256();
  Err err;
  uint64_t zeros = 0, small = 0;
  for (size_t b = 0; b < cols / 16; ++b) {
    __m256 s = _mm256_set1_ps(S[b]);
    __m256i code[2];
    __m256 sq[2];
    for (int h = 0; h < 2; ++h) {
      __m256 wv = _mm256_loadu_ps(w + 16 * b + 8 * h);
      __m256 x = _mm256_div_ps(wv, s);
      __m256i idx = magnitude_index(_mm256_and_ps(x, abs_mask));
      __m256i neg = _mm256_castps_si256(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
      __m256i is_zero = _mm256_cmpeq_epi32(idx, zero);
      if (canonical_zero) neg = _mm256_andnot_si256(is_zero, neg);
      code[h] = _mm256_or_si256(idx, _mm256_and_si256(neg, eight));
      if (st) {
        __m256 d = _mm256_sub_ps(_mm256_mul_ps(lookup(code[h]), s), wv);
        sq[h] = _mm256_mul_ps(d, d);
        zeros += count_mask(is_zero);
        small += count_mask(_mm256_cmpgt_epi32(_mm256_add_epi32(two, _mm256_set1_epi32(1)), idx));
      }
    }
    uint64_t bytes = pack16(code[0], code[1]);
    __builtin_memcpy(packed + 8 * b, &bytes, 8);
    if (st) err.add(sq[0], sq[1]);
  }
  if (st) {
    RowStats local;
    local.sq_err = err.total();
    local.zeros = zeros;
    local.small = small;
    st->add(local);
  }
}

void code_stats_avx2(const uint8_t* packed, size_t cols, const float* S, const float* w, RowStats* st) {
  const __m256i seven = _mm256_set1_epi32(7), three = _mm256_set1_epi32(3), zero = _mm256_setzero_si256();
  Err err;
  uint64_t zeros = 0, small = 0;
  for (size_t b = 0; b < cols / 16; ++b) {
    __m128i raw = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(packed + 8 * b));
    __m128i lo = _mm_and_si128(raw, _mm_set1_epi8(0x0F));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(raw, 4), _mm_set1_epi8(0x0F));
    __m128i inter = _mm_unpacklo_epi8(lo, hi);  // 16 codes in order
    __m256 s = _mm256_set1_ps(S[b]);
    __m256 sq[2];
    for (int h = 0; h < 2; ++h) {
      __m256i code = _mm256_cvtepu8_epi32(h == 0 ? inter : _mm_srli_si128(inter, 8));
      __m256 d = _mm256_sub_ps(_mm256_mul_ps(lookup(code), s), _mm256_loadu_ps(w + 16 * b + 8 * h));
      sq[h] = _mm256_mul_ps(d, d);
      __m256i mag = _mm256_and_si256(code, seven);
      zeros += count_mask(_mm256_cmpeq_epi32(mag, zero));
      small += count_mask(_mm256_cmpgt_epi32(three, mag));
    }
    err.add(sq[0], sq[1]);
  }
  RowStats local;
  local.sq_err = err.total();
  local.zeros = zeros;
  local.small = small;
  st->add(local);
}

void seed_row_avx2(const void* w, bool bf16, size_t cols, const uint8_t* tscale, const uint8_t* tpacked,
                   const SeedCodeTables& t, bool canonical_zero, uint8_t* packed, double* sq_new, double* sq_base) {
  seed_row_via(quantize_row_avx2, code_stats_avx2, w, bf16, cols, tscale, tpacked, t, canonical_zero, packed, sq_new, sq_base);
}

}  // namespace

// Block scales are 1/16 of the work; the AVX2 table reuses the portable implementation.
const NvKernels kNvKernelsAvx2 = {Isa::kAvx2, quantize_row_avx2, code_stats_avx2, absmax_scales_row_portable,
                                  seed_scales_portable, seed_row_avx2};

}  // namespace fp4z
