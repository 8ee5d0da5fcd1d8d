// AVX-512 rd block decisions: the 16 weights of a block in one zmm, f32, the code-cost table looked up
// with permutexvar; makes exactly the decisions of rd_choose_blocks_scalar (same f32 operations).
#include <immintrin.h>

#include "nvfp4/rd.h"
#include "nvfp4/rd_internal.h"

namespace fp4z {

namespace {

// Pairwise f32 sum of the 16 lanes in rd.h's tree order: j + 8, + 4, + 2, + 1.
inline float tree16(__m512 c) {
  const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(c), _mm512_extractf32x8_ps(c, 1));
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

// Σ (double(deq) − double(w))² over 16 lanes in the same tree order, in double.
inline double tree16_sq_err(__m512 deq, __m512 w) {
  const __m512d e_lo = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(deq)), _mm512_cvtps_pd(_mm512_castps512_ps256(w)));
  const __m512d e_hi = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(deq, 1)), _mm512_cvtps_pd(_mm512_extractf32x8_ps(w, 1)));
  const __m512d s8 = _mm512_add_pd(_mm512_mul_pd(e_lo, e_lo), _mm512_mul_pd(e_hi, e_hi));
  const __m256d s4 = _mm256_add_pd(_mm512_castpd512_pd256(s8), _mm512_extractf64x4_pd(s8, 1));
  const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
}

}  // namespace

void rd_choose_blocks_avx512(const RdPrepared& t, const float* w, const float* wt, size_t nblocks, uint8_t* codes,
                             uint8_t* scales, double* sq_err) {
  const __m512 magnitude = _mm512_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f, 0, 0, 0, 0, 0, 0, 0, 0);
  const __m512 value = _mm512_loadu_ps(kE2M1Value);
  const __m512 L = _mm512_loadu_ps(t.L);
  const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi32(1), seven = _mm512_set1_epi32(7),
                eight = _mm512_set1_epi32(8), bias = _mm512_set1_epi32(252);
  for (size_t i = 0; i < nblocks; ++i) {
    const float* wb = w + 16 * i;
    const __m512 wv = _mm512_loadu_ps(wb);
    const __m512 x = _mm512_abs_ps(wv);
    const __mmask16 negative = _mm512_cmp_ps_mask(wv, _mm512_setzero_ps(), _CMP_LT_OQ);
    const float amax = _mm512_reduce_max_ps(x);
    if (amax == 0.0f) {
      scales[i] = rd_detail::fixed_block(wb, t.zero_byte, codes + 16 * i, sq_err);
      continue;
    }
    const int b0 = rd_detail::absmax_byte(amax, t.gs);
    const int first = std::max(1, b0 - t.below), last = std::min(0x7E, b0 + t.above);
    const __m512 wtv = wt ? _mm512_loadu_ps(wt + 16 * i) : _mm512_set1_ps(1.0f);
    bool found = false;
    float best_total = 0, best_S = 0;
    int best = b0;
    __m512i best_codes = zero;
    for (int b = first; b <= last; ++b) {
      if (!t.usable[b]) continue;
      const __m512 S = _mm512_set1_ps(t.S[b]);
      const __m512 a = _mm512_mul_ps(x, _mm512_set1_ps(t.R[b]));
      // lo = number of nonzero magnitudes <= a, from a's exponent and first mantissa bit:
      // u = 2·exponent + bit − 252 is lo for a >= 0.75 (clipped to 0..7); a in [0.5, 0.75) has u = 0, lo = 1.
      const __m512i u = _mm512_sub_epi32(_mm512_srli_epi32(_mm512_castps_si512(a), 22), bias);
      __m512i lo = _mm512_min_epi32(_mm512_max_epi32(u, zero), seven);
      lo = _mm512_mask_mov_epi32(lo, _mm512_cmpeq_epi32_mask(u, zero), one);
      const __m512i cand[3] = {_mm512_max_epi32(_mm512_sub_epi32(lo, one), zero), lo, _mm512_min_epi32(_mm512_add_epi32(lo, one), seven)};
      __m512 best_c = _mm512_setzero_ps();
      __m512i block_codes = zero;
      for (int k = 0; k < 3; ++k) {
        const __m512i m = cand[k];
        const __m512 e = _mm512_sub_ps(x, _mm512_mul_ps(_mm512_permutexvar_ps(m, magnitude), S));
        __m512 d = _mm512_mul_ps(e, e);
        if (wt) d = _mm512_mul_ps(wtv, d);
        const __m512i code = _mm512_mask_or_epi32(m, _mm512_mask_test_epi32_mask(negative, m, m), m, eight);
        const __m512 c = _mm512_add_ps(d, _mm512_permutexvar_ps(code, L));
        if (k == 0) {
          best_c = c;
          block_codes = code;
        } else {
          const __mmask16 lower = _mm512_cmp_ps_mask(c, best_c, _CMP_LT_OQ);
          best_c = _mm512_mask_mov_ps(best_c, lower, c);
          block_codes = _mm512_mask_mov_epi32(block_codes, lower, code);
        }
      }
      const float total = t.Ls[b] + tree16(best_c);
      if (!found || total < best_total) {
        found = true;
        best_total = total;
        best = b;
        best_S = t.S[b];
        best_codes = block_codes;
      }
    }
    if (!found) {
      scales[i] = rd_detail::fixed_block(wb, uint8_t(best), codes + 16 * i, sq_err);
      continue;
    }
    scales[i] = uint8_t(best);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + 16 * i), _mm512_cvtepi32_epi8(best_codes));
    if (sq_err) *sq_err += tree16_sq_err(_mm512_mul_ps(_mm512_permutexvar_ps(best_codes, value), _mm512_set1_ps(best_S)), wv);
  }
}

}  // namespace fp4z
