// AVX2 rd block decisions: a block's 16 weights in two ymm, f32, code costs and candidate magnitudes
// looked up with permutevar8x32; makes exactly the decisions of rd_choose_blocks_scalar (same f32 operations).
#include <immintrin.h>

#include <cmath>

#include "nvfp4/rd.h"
#include "nvfp4/rd_internal.h"

namespace fp4z {

namespace {

// One half (8 lanes) of a block: |w|, w < 0 as an all-ones lane mask, and the weights.
struct Half {
  __m256 x, negative, wt;
};

// lo (the number of nonzero magnitudes <= a, a = fl(|w|·R)) from the lo index w' of rd_internal.h:
// w' = max(2·exponent(a) + first mantissa bit − 251, 0) maps 0 → 0, 1 and 2 → 1, then w' − 1 up to 7.
inline __m256i lo_of(__m256 x, float R) {
  const __m256 a = _mm256_mul_ps(x, _mm256_set1_ps(R));
  __m256i w = _mm256_sub_epi32(_mm256_srli_epi32(_mm256_castps_si256(a), 22), _mm256_set1_epi32(251));
  w = _mm256_max_epi32(w, _mm256_setzero_si256());
  return _mm256_min_epi32(_mm256_add_epi32(w, _mm256_cmpgt_epi32(w, _mm256_set1_epi32(1))), _mm256_set1_epi32(7));
}

// fl(fl(wt·fl(e·e)) + L[code]) with e = fl(|w| − magS[m]) for magnitude m per lane; L of the positive
// codes in Lpos, of the negative ones (zero: code 0) in Lneg.
inline __m256 candidate_cost(__m256i m, const Half& h, __m256 magS, bool weighted, __m256 Lpos, __m256 Lneg) {
  const __m256 e = _mm256_sub_ps(h.x, _mm256_permutevar8x32_ps(magS, m));
  __m256 d = _mm256_mul_ps(e, e);
  if (weighted) d = _mm256_mul_ps(h.wt, d);
  return _mm256_add_ps(d, _mm256_blendv_ps(_mm256_permutevar8x32_ps(Lpos, m), _mm256_permutevar8x32_ps(Lneg, m), h.negative));
}

// The lowest cost per lane of one half for byte b: candidates lo − 1 (unless `two`), lo, lo + 1.
inline __m256 lowest_cost(const RdPrepared& t, int b, const Half& h, bool two, bool weighted, __m256 Lpos, __m256 Lneg) {
  const __m256 magS = _mm256_load_ps(t.magS[b]);
  const __m256i lo = lo_of(h.x, t.R[b]);
  const __m256i up = _mm256_min_epi32(_mm256_add_epi32(lo, _mm256_set1_epi32(1)), _mm256_set1_epi32(7));
  __m256 best = _mm256_min_ps(candidate_cost(lo, h, magS, weighted, Lpos, Lneg), candidate_cost(up, h, magS, weighted, Lpos, Lneg));
  if (!two) {
    const __m256i down = _mm256_max_epi32(_mm256_sub_epi32(lo, _mm256_set1_epi32(1)), _mm256_setzero_si256());
    best = _mm256_min_ps(candidate_cost(down, h, magS, weighted, Lpos, Lneg), best);
  }
  return best;
}

// The chosen byte's codes of one half: the first of the lowest costs among lo − 1, lo, lo + 1; also
// the dequantized values fl(value·S).
inline __m256i chosen_codes(const RdPrepared& t, int b, const Half& h, bool weighted, __m256 Lpos, __m256 Lneg, __m256* deq) {
  const __m256 magS = _mm256_load_ps(t.magS[b]);
  const __m256i lo = lo_of(h.x, t.R[b]);
  __m256i m = _mm256_max_epi32(_mm256_sub_epi32(lo, _mm256_set1_epi32(1)), _mm256_setzero_si256());
  __m256 best = candidate_cost(m, h, magS, weighted, Lpos, Lneg);
  for (int k = 0; k <= 1; ++k) {
    const __m256i mk = k == 0 ? lo : _mm256_min_epi32(_mm256_add_epi32(lo, _mm256_set1_epi32(1)), _mm256_set1_epi32(7));
    const __m256 cost = candidate_cost(mk, h, magS, weighted, Lpos, Lneg);
    const __m256 lower = _mm256_cmp_ps(cost, best, _CMP_LT_OQ);
    best = _mm256_blendv_ps(best, cost, lower);
    m = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(m), _mm256_castsi256_ps(mk), lower));
  }
  // fl(value·S) = ±fl(mag·S); a negative weight's zero is code 0 (+0).
  const __m256 mag = _mm256_permutevar8x32_ps(magS, m);
  const __m256i nonzero_negative = _mm256_andnot_si256(_mm256_cmpeq_epi32(m, _mm256_setzero_si256()), _mm256_castps_si256(h.negative));
  *deq = _mm256_xor_ps(mag, _mm256_and_ps(_mm256_castsi256_ps(nonzero_negative), _mm256_set1_ps(-0.0f)));
  return _mm256_or_si256(m, _mm256_and_si256(nonzero_negative, _mm256_set1_epi32(8)));
}

// tree16 of the 16 lanes of (lo, hi): j + 8, then + 4, + 2, + 1 apart.
inline float tree16(__m256 lo, __m256 hi) {
  const __m256 s8 = _mm256_add_ps(lo, hi);
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

// Σ (double(deq) − double(w))² over the 16 lanes in the same tree order, in double.
inline double tree16_sq_err(const __m256* deq, const __m256* w) {
  __m256d d[4];
  for (int q = 0; q < 4; ++q) {
    const __m128 dq = q & 1 ? _mm256_extractf128_ps(deq[q / 2], 1) : _mm256_castps256_ps128(deq[q / 2]);
    const __m128 wq = q & 1 ? _mm256_extractf128_ps(w[q / 2], 1) : _mm256_castps256_ps128(w[q / 2]);
    const __m256d e = _mm256_sub_pd(_mm256_cvtps_pd(dq), _mm256_cvtps_pd(wq));
    d[q] = _mm256_mul_pd(e, e);
  }
  const __m256d s4 = _mm256_add_pd(_mm256_add_pd(d[0], d[2]), _mm256_add_pd(d[1], d[3]));
  const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
}

}  // namespace

void rd_choose_blocks_avx2(const RdPrepared& t, const float* w, const float* wt, size_t nblocks, uint8_t* codes,
                           uint8_t* scales, double* sq_err) {
  const __m256 Lpos = _mm256_load_ps(t.L16), Lneg = _mm256_load_ps(t.L16 + 8);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  const bool weighted = wt != nullptr;
  for (size_t i = 0; i < nblocks; ++i) {
    const float* wb = w + 16 * i;
    __m256 wv[2];
    Half h[2];
    for (int k = 0; k < 2; ++k) {
      wv[k] = _mm256_loadu_ps(wb + 8 * k);
      h[k].x = _mm256_and_ps(wv[k], abs_mask);
      h[k].negative = _mm256_cmp_ps(wv[k], _mm256_setzero_ps(), _CMP_LT_OQ);
      h[k].wt = weighted ? _mm256_loadu_ps(wt + 16 * i + 8 * k) : _mm256_set1_ps(1.0f);
    }
    const __m256 m8 = _mm256_max_ps(h[0].x, h[1].x);
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    const float amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1)));
    if (amax == 0.0f) {
      scales[i] = rd_detail::fixed_block(wb, t.zero_byte, codes + 16 * i, sq_err);
      continue;
    }
    const int b0 = rd_detail::absmax_byte(amax, t.gs);
    const int first = std::max(1, b0 - t.below), last = std::min(0x7E, b0 + t.above);
    if (t.usable_prefix[last + 1] == t.usable_prefix[first]) {
      scales[i] = rd_detail::fixed_block(wb, uint8_t(b0), codes + 16 * i, sq_err);
      continue;
    }
    int smallest = first;
    while (!t.usable[smallest]) ++smallest;
    // Without the lo − 1 candidate where it cannot win (rd_prepare's bound): same lowest costs.
    const bool two = !weighted && t.need_prefix[last + 1] == t.need_prefix[first] && amax * t.R[smallest] < rd_detail::kPruneMaxA;
    float best_total = 0;
    int best = -1;
    for (int b = smallest; b <= last; ++b) {
      if (!t.usable[b]) continue;
      const float total = t.Ls[b] + tree16(lowest_cost(t, b, h[0], two, weighted, Lpos, Lneg), lowest_cost(t, b, h[1], two, weighted, Lpos, Lneg));
      if (best < 0 || total < best_total) {
        best_total = total;
        best = b;
      }
    }
    __m256 deq[2];
    alignas(32) int32_t code[16];
    for (int k = 0; k < 2; ++k) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(code + 8 * k), chosen_codes(t, best, h[k], weighted, Lpos, Lneg, &deq[k]));
    }
    for (int j = 0; j < 16; ++j) codes[16 * i + size_t(j)] = uint8_t(code[j]);
    scales[i] = uint8_t(best);
    if (sq_err) *sq_err += tree16_sq_err(deq, wv);
  }
}

}  // namespace fp4z
