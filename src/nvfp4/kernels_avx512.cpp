// AVX-512 NVFP4 row kernels: one 16-element block per zmm register; bit-identical to the scalar path.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "nvfp4/codec.h"
#include "nvfp4/kernels.h"

namespace fp4z {

namespace {

// Magnitude index (0..7) of |x| as 16 int32 lanes: one masked increment per E2M1 threshold,
// with the same strict/non-strict comparisons as e2m1_magnitude_index (ordered: NaN -> 0).
inline __m512i magnitude_index(__m512 a) {
  const __m512i one = _mm512_set1_epi32(1);
  __m512i idx = _mm512_setzero_si512();
  idx = _mm512_mask_add_epi32(idx, _mm512_cmp_ps_mask(a, _mm512_set1_ps(0.25f), _CMP_GT_OQ), idx, one);
  idx = _mm512_mask_add_epi32(idx, _mm512_cmp_ps_mask(a, _mm512_set1_ps(0.75f), _CMP_GE_OQ), idx, one);
  idx = _mm512_mask_add_epi32(idx, _mm512_cmp_ps_mask(a, _mm512_set1_ps(1.25f), _CMP_GT_OQ), idx, one);
  idx = _mm512_mask_add_epi32(idx, _mm512_cmp_ps_mask(a, _mm512_set1_ps(1.75f), _CMP_GE_OQ), idx, one);
  idx = _mm512_mask_add_epi32(idx, _mm512_cmp_ps_mask(a, _mm512_set1_ps(2.5f), _CMP_GT_OQ), idx, one);
  idx = _mm512_mask_add_epi32(idx, _mm512_cmp_ps_mask(a, _mm512_set1_ps(3.5f), _CMP_GE_OQ), idx, one);
  idx = _mm512_mask_add_epi32(idx, _mm512_cmp_ps_mask(a, _mm512_set1_ps(5.0f), _CMP_GT_OQ), idx, one);
  return idx;
}

// 16 codes in int32 lanes -> 8 packed bytes (even lane in the low nibble).
inline uint64_t pack16(__m512i codes) {
  __m128i b = _mm512_cvtepi32_epi8(codes);                 // 16 bytes
  __m128i v = _mm_or_si128(b, _mm_srli_epi16(b, 4));       // low byte of each u16: lo | hi<<4
  v = _mm_and_si128(v, _mm_set1_epi16(0x00FF));
  v = _mm_packus_epi16(v, v);
  return uint64_t(_mm_cvtsi128_si64(v));
}

inline __m512i unpack16(const uint8_t* p) {
  __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  __m128i lo = _mm_and_si128(b, _mm_set1_epi8(0x0F));
  __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0F));
  __m128i inter = _mm_unpacklo_epi8(lo, hi);
  return _mm512_cvtepu8_epi32(inter);
}

// lane i += double(sq[i]) + double(sq[i+8]) (the shared summation order, see kernels_scalar.cpp).
inline __m512d add_err(__m512d acc, __m512 sq) {
  __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(sq));
  __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(sq), 1)));
  return _mm512_add_pd(acc, _mm512_add_pd(lo, hi));
}

inline double lanes_total(__m512d acc) {
  alignas(64) double l[8];
  _mm512_store_pd(l, acc);
  double t = 0;
  for (int i = 0; i < 8; ++i) t += l[i];
  return t;
}

void quantize_row_avx512(const float* w, size_t cols, const float* S, bool canonical_zero, uint8_t* packed, RowStats* st) {
  const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
  const __m512 table = _mm512_loadu_ps(kE2M1Value);
  const __m512i eight = _mm512_set1_epi32(8);
  __m512d acc = _mm512_setzero_pd();
  uint64_t zeros = 0, small = 0;
  for (size_t b = 0; b < cols / 16; ++b) {
    __m512 s = _mm512_set1_ps(S[b]);
    __m512 wv = _mm512_loadu_ps(w + 16 * b);
    __m512 x = _mm512_div_ps(wv, s);
    __m512i idx = magnitude_index(_mm512_and_ps(x, abs_mask));
    __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    __mmask16 zero = _mm512_cmpeq_epi32_mask(idx, _mm512_setzero_si512());
    if (canonical_zero) neg &= __mmask16(~zero);
    __m512i code = _mm512_mask_or_epi32(idx, neg, idx, eight);
    uint64_t bytes = pack16(code);
    __builtin_memcpy(packed + 8 * b, &bytes, 8);
    if (st) {
      __m512 deq = _mm512_mul_ps(_mm512_permutexvar_ps(code, table), s);
      __m512 d = _mm512_sub_ps(deq, wv);
      acc = add_err(acc, _mm512_mul_ps(d, d));
      zeros += unsigned(__builtin_popcount(zero));
      small += unsigned(__builtin_popcount(_mm512_cmple_epi32_mask(idx, _mm512_set1_epi32(2))));
    }
  }
  if (st) {
    RowStats local;
    local.sq_err = lanes_total(acc);
    local.zeros = zeros;
    local.small = small;
    st->add(local);
  }
}

void code_stats_avx512(const uint8_t* packed, size_t cols, const float* S, const float* w, RowStats* st) {
  const __m512 table = _mm512_loadu_ps(kE2M1Value);
  const __m512i seven = _mm512_set1_epi32(7);
  __m512d acc = _mm512_setzero_pd();
  uint64_t zeros = 0, small = 0;
  for (size_t b = 0; b < cols / 16; ++b) {
    __m512i code = unpack16(packed + 8 * b);
    __m512 deq = _mm512_mul_ps(_mm512_permutexvar_ps(code, table), _mm512_set1_ps(S[b]));
    __m512 d = _mm512_sub_ps(deq, _mm512_loadu_ps(w + 16 * b));
    acc = add_err(acc, _mm512_mul_ps(d, d));
    __m512i mag = _mm512_and_si512(code, seven);
    zeros += unsigned(__builtin_popcount(_mm512_cmpeq_epi32_mask(mag, _mm512_setzero_si512())));
    small += unsigned(__builtin_popcount(_mm512_cmple_epi32_mask(mag, _mm512_set1_epi32(2))));
  }
  RowStats local;
  local.sq_err = lanes_total(acc);
  local.zeros = zeros;
  local.small = small;
  st->add(local);
}

// e4m3_encode_rne for 16 lanes of finite values in [0, 448] (the absmax path clamps first).
inline __m512i e4m3_encode_vec(__m512 a) {
  __m512i bits = _mm512_castps_si512(a);
  // Normal range: keep 3 mantissa bits with round-half-even at bit 20, rebias 127 -> 7.
  __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 20), _mm512_set1_epi32(1));
  __m512i r = _mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7FFFF), lsb));
  __m512i e = _mm512_sub_epi32(_mm512_srli_epi32(r, 23), _mm512_set1_epi32(120));
  __m512i m = _mm512_and_si512(_mm512_srli_epi32(r, 20), _mm512_set1_epi32(7));
  __m512i normal = _mm512_min_epi32(_mm512_or_si512(_mm512_slli_epi32(e, 3), m), _mm512_set1_epi32(0x7E));
  // Below 2^-6: multiples of 2^-9, round half to even on the integer (exact scaling by 512).
  __m512 q = _mm512_roundscale_ps(_mm512_mul_ps(a, _mm512_set1_ps(512.0f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512i sub = _mm512_cvtps_epi32(q);
  __mmask16 is_sub = _mm512_cmp_ps_mask(a, _mm512_set1_ps(0.015625f), _CMP_LT_OQ);
  return _mm512_mask_blend_epi32(is_sub, normal, sub);
}

void absmax_scales_row_avx512(const float* w, size_t cols, float gs, SourceRounding rounding, uint8_t* s8, float* S) {
  const size_t nb = cols / 16;
  const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
  const __m512 vgs = _mm512_set1_ps(gs);
  for (size_t b0 = 0; b0 < nb; b0 += 16) {
    const size_t cnt = std::min<size_t>(16, nb - b0);
    alignas(64) float amax[16] = {};
    for (size_t j = 0; j < cnt; ++j) amax[j] = _mm512_reduce_max_ps(_mm512_and_ps(_mm512_loadu_ps(w + 16 * (b0 + j)), abs_mask));
    __m512 q = _mm512_div_ps(_mm512_load_ps(amax), _mm512_set1_ps(6.0f));
    if (rounding == SourceRounding::kF16) {  // round to IEEE half, RNE, subnormals kept
      q = _mm512_cvtph_ps(_mm512_cvtps_ph(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    } else if (rounding == SourceRounding::kBF16) {  // round to bf16, RNE (finite inputs)
      __m512i qb = _mm512_castps_si512(q);
      __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(qb, 16), _mm512_set1_epi32(1));
      qb = _mm512_add_epi32(qb, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), lsb));
      q = _mm512_castsi512_ps(_mm512_and_si512(qb, _mm512_set1_epi32(int(0xFFFF0000u))));
    }
    __m512 s = _mm512_min_ps(_mm512_mul_ps(vgs, q), _mm512_set1_ps(448.0f));
    __m512i code = e4m3_encode_vec(s);
    code = _mm512_mask_mov_epi32(code, _mm512_cmpeq_epi32_mask(code, _mm512_setzero_si512()), _mm512_set1_epi32(0x20));
    __m512 S16 = _mm512_div_ps(_mm512_i32gather_ps(code, kE4M3.v, 4), vgs);
    __mmask16 keep = __mmask16((1u << cnt) - 1);
    _mm512_mask_cvtepi32_storeu_epi8(s8 + b0, keep, code);
    _mm512_mask_storeu_ps(S + b0, keep, S16);
  }
}

void seed_scales_avx512(const float* D, const float* S0, size_t n, float g1, uint8_t* s8, float* S1, float* ratio) {
  const __m512 vg = _mm512_set1_ps(g1);
  for (size_t i = 0; i < n; i += 16) {
    __mmask16 keep = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    __m512 d = _mm512_maskz_loadu_ps(keep, D + i);
    __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(d, vg), _mm512_setzero_ps()), _mm512_set1_ps(448.0f));
    __m512i code = e4m3_encode_vec(v);
    __m512 s1 = _mm512_div_ps(_mm512_i32gather_ps(code, kE4M3.v, 4), vg);
    __m512 s0 = _mm512_maskz_loadu_ps(keep, S0 + i);
    __m512 r = _mm512_div_ps(s1, _mm512_max_ps(s0, _mm512_set1_ps(1e-12f)));
    _mm512_mask_cvtepi32_storeu_epi8(s8 + i, keep, code);
    _mm512_mask_storeu_ps(S1 + i, keep, s1);
    _mm512_mask_storeu_ps(ratio + i, keep, r);
  }
}

// Seed steps 9-13 of one row in one pass and without a division: the magnitude index of fl(|w| / S1)
// is the number of the block's cut-offs |w| reaches (e2m1_cutoffs); the cut-offs are nondecreasing
// (reaching one means reaching those below), so three comparisons find it by bisection. The
// template's codes are measured against the same loaded weights. Port 5 (shuffles, comparisons
// into masks) is this loop's limit, so the code avoids shuffles where a load or a blend can do.
template <bool kBf16>
void seed_row_avx512_t(const void* w, size_t cols, const uint8_t* tscale, const uint8_t* tpacked, const SeedCodeTables& t,
                       bool canonical_zero, uint8_t* packed, double* sq_new, double* sq_base) {
  const __m512 abs_mask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
  const __m512 table = _mm512_loadu_ps(kE2M1Value);
  const __m512i one = _mm512_set1_epi32(1), two = _mm512_set1_epi32(2), four = _mm512_set1_epi32(4),
                eight = _mm512_set1_epi32(8);
  const __m512i nibble_shift = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
  const int sign_cut = canonical_zero ? 1 : 0;  // canonical zero: negative only when the index is >= 1
  __m512d acc_new = _mm512_setzero_pd(), acc_base = _mm512_setzero_pd();
  for (size_t b = 0; b < cols / 16; ++b) {
    const uint8_t tc = tscale[b];
    const float* cut = t.cut[tc];
    __m512 wv;
    if constexpr (kBf16) {
      __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + 16 * b));
      wv = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    } else {
      wv = _mm512_loadu_ps(static_cast<const float*>(w) + 16 * b);
    }
    const __m512 a = _mm512_and_ps(wv, abs_mask);
    const __mmask16 m4 = _mm512_cmp_ps_mask(a, _mm512_set1_ps(cut[4]), _CMP_GE_OQ);
    const __mmask16 m2 = _mm512_cmp_ps_mask(a, _mm512_mask_blend_ps(m4, _mm512_set1_ps(cut[2]), _mm512_set1_ps(cut[6])), _CMP_GE_OQ);
    const __m512 c13 = _mm512_mask_blend_ps(m2, _mm512_set1_ps(cut[1]), _mm512_set1_ps(cut[3]));
    const __m512 c57 = _mm512_mask_blend_ps(m2, _mm512_set1_ps(cut[5]), _mm512_set1_ps(cut[7]));
    const __mmask16 m1 = _mm512_cmp_ps_mask(a, _mm512_mask_blend_ps(m4, c13, c57), _CMP_GE_OQ);
    __m512i idx = _mm512_maskz_mov_epi32(m4, four);
    idx = _mm512_mask_add_epi32(idx, m2, idx, two);
    idx = _mm512_mask_add_epi32(idx, m1, idx, one);
    __mmask16 neg = _mm512_movepi32_mask(_mm512_castps_si512(wv)) & _mm512_cmp_ps_mask(a, _mm512_set1_ps(cut[sign_cut]), _CMP_GE_OQ);
    const __m512i code = _mm512_mask_or_epi32(idx, neg, idx, eight);
    // Pack: the odd lane's code moves next to the even one's within each 64-bit lane, one byte each.
    const __m512i pair = _mm512_or_si512(code, _mm512_srli_epi64(code, 28));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(packed + 8 * b), _mm512_cvtepi64_epi8(pair));
    // Template codes: each half of the 8 bytes broadcast to 8 lanes, shifted to its nibble (the
    // permutation reads only the low 4 bits of an index).
    uint32_t lo, hi;
    std::memcpy(&lo, tpacked + 8 * b, 4);
    std::memcpy(&hi, tpacked + 8 * b + 4, 4);
    const __m512i tcode = _mm512_srlv_epi32(_mm512_mask_set1_epi32(_mm512_set1_epi32(int(lo)), 0xFF00, int(hi)), nibble_shift);
    __m512 d = _mm512_sub_ps(_mm512_mul_ps(_mm512_permutexvar_ps(code, table), _mm512_set1_ps(t.S1[tc])), wv);
    __m512 d0 = _mm512_sub_ps(_mm512_mul_ps(_mm512_permutexvar_ps(tcode, table), _mm512_set1_ps(t.S0[tc])), wv);
    // Through memory: halves converted from memory need no extraction shuffle.
    alignas(64) float sq[32];
    _mm512_store_ps(sq, _mm512_mul_ps(d, d));
    _mm512_store_ps(sq + 16, _mm512_mul_ps(d0, d0));
    acc_new = _mm512_add_pd(acc_new, _mm512_add_pd(_mm512_cvtps_pd(_mm256_load_ps(sq)), _mm512_cvtps_pd(_mm256_load_ps(sq + 8))));
    acc_base = _mm512_add_pd(acc_base, _mm512_add_pd(_mm512_cvtps_pd(_mm256_load_ps(sq + 16)), _mm512_cvtps_pd(_mm256_load_ps(sq + 24))));
  }
  *sq_new = lanes_total(acc_new);
  *sq_base = lanes_total(acc_base);
}

void seed_row_avx512(const void* w, bool bf16, size_t cols, const uint8_t* tscale, const uint8_t* tpacked,
                     const SeedCodeTables& t, bool canonical_zero, uint8_t* packed, double* sq_new, double* sq_base) {
  if (bf16) seed_row_avx512_t<true>(w, cols, tscale, tpacked, t, canonical_zero, packed, sq_new, sq_base);
  else seed_row_avx512_t<false>(w, cols, tscale, tpacked, t, canonical_zero, packed, sq_new, sq_base);
}

}  // namespace

const NvKernels kNvKernelsAvx512 = {Isa::kAvx512, quantize_row_avx512, code_stats_avx512, absmax_scales_row_avx512,
                                    seed_scales_avx512, seed_row_avx512};

}  // namespace fp4z
