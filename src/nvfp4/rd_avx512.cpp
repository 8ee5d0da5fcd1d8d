// AVX-512 rd block decisions: the 16 weights of a block in one zmm, f32, the code-cost table looked up
// with permutexvar; makes exactly the decisions of rd_choose_blocks_scalar (same f32 operations).
#include <immintrin.h>

#include <cmath>

#include "nvfp4/rd.h"
#include "nvfp4/rd_internal.h"

namespace fp4z {

namespace {

// out lane k = tree16 of v[k] under `op` (the same pairings as tree16: j + 8, + 4, + 2, + 1), by a
// transposing reduction: 16 candidate totals (add) or 16 block maxima (max) at once. After it lane
// 4L + e holds input L + 4e; the last permute restores the natural order. tree16_x16_placed leaves it
// out: its caller puts input k at v[placed(k)], so that lane k holds input k.
constexpr int placed(int k) { return (k >> 2) + 4 * (k & 3); }

template <typename Op>
inline __m512 tree16_x16_placed(const __m512* v, Op op) {
  __m512 s1[8], s2[4], s3[2];
  for (int p = 0; p < 8; ++p)
    s1[p] = op(_mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], _MM_SHUFFLE(1, 0, 1, 0)),
               _mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  for (int q = 0; q < 4; ++q)
    s2[q] = op(_mm512_shuffle_f32x4(s1[2 * q], s1[2 * q + 1], _MM_SHUFFLE(2, 0, 2, 0)),
               _mm512_shuffle_f32x4(s1[2 * q], s1[2 * q + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  for (int r = 0; r < 2; ++r)
    s3[r] = op(_mm512_shuffle_ps(s2[2 * r], s2[2 * r + 1], _MM_SHUFFLE(1, 0, 1, 0)),
               _mm512_shuffle_ps(s2[2 * r], s2[2 * r + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  return op(_mm512_shuffle_ps(s3[0], s3[1], _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_ps(s3[0], s3[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

template <typename Op>
inline __m512 tree16_x16(const __m512* v, Op op) {
  const __m512i natural = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(natural, tree16_x16_placed(v, op));
}

inline __m512 add16(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
inline __m512 max16(__m512 a, __m512 b) { return _mm512_max_ps(a, b); }

// The lo index of rd_internal.h per lane, plus 16 for w < 0. With `bounded` (a < 64 known for every
// lane) the clamp at 15 is left out. subs_epu16 is max(v − 251, 0) on v < 512 (the upper 16 bits are 0).
template <bool bounded>
inline __m512i lo_table_index(__m512 x, const float* R, __m512i sign16) {
  const __m512 a = _mm512_mul_ps(x, _mm512_set1_ps(*R));
  __m512i w = _mm512_subs_epu16(_mm512_srli_epi32(_mm512_castps_si512(a), 22), _mm512_set1_epi32(251));
  if (!bounded) w = _mm512_min_epu32(w, _mm512_set1_epi32(15));
  return _mm512_or_si512(w, sign16);
}

// fl(fl(wt·fl(e·e)) + Lc[wq]) with e = fl(|w| − magSc[wq]): candidate c's cost per lane.
inline __m512 candidate_cost(__m512i wq, __m512 x, __m512 magSc, __m512 wtv, bool weighted, __m512 Lc_lo, __m512 Lc_hi) {
  const __m512 e = _mm512_sub_ps(x, _mm512_permutexvar_ps(wq, magSc));
  __m512 d = _mm512_mul_ps(e, e);
  if (weighted) d = _mm512_mul_ps(wtv, d);
  return _mm512_add_ps(d, _mm512_permutex2var_ps(Lc_lo, wq, Lc_hi));
}

// fl(fl(e·e) + L) with e = fl(|w| − M) for one of a byte's two kept candidates (RdPrepared::pairM, pairL:
// 32-entry tables by the lo index with the sign bit), weight 1.
inline __m512 pair_cost(__m512i wq, __m512 x, const float* M32, const float* L32) {
  const __m512 e = _mm512_sub_ps(x, _mm512_permutex2var_ps(_mm512_load_ps(M32), wq, _mm512_load_ps(M32 + 16)));
  return _mm512_add_ps(_mm512_mul_ps(e, e), _mm512_permutex2var_ps(_mm512_load_ps(L32), wq, _mm512_load_ps(L32 + 16)));
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
  const __m512 value = _mm512_loadu_ps(kE2M1Value);
  const __m512 inf = _mm512_set1_ps(INFINITY);
  const __m512i seven = _mm512_set1_epi32(7);
  __m512 Lc_lo[3], Lc_hi[3];
  __m512i cand_lo[3], cand_hi[3];
  for (int k = 0; k < 3; ++k) {
    Lc_lo[k] = _mm512_load_ps(t.Lc[k]);
    Lc_hi[k] = _mm512_load_ps(t.Lc[k] + 16);
    cand_lo[k] = _mm512_load_si512(rd_detail::kCandidate[k]);
    cand_hi[k] = _mm512_load_si512(rd_detail::kCandidate[k] + 16);
  }
  alignas(64) float ls[16];
  __m512 v[16];
  int cb[128];
  // Blocks in chunks of 16, in three sweeps (so that consecutive blocks' work overlaps instead of
  // waiting on each block's chain of reductions): the chunk's absmaxes at once, the byte search per
  // block, then the chosen bytes' codes and squared errors in block order.
  constexpr size_t kChunk = 16;
  alignas(64) float amax_of[kChunk];
  int byte_of[kChunk];
  bool fixed_of[kChunk];
  for (size_t c0 = 0; c0 < nblocks; c0 += kChunk) {
    const size_t cn = std::min(kChunk, nblocks - c0);
    if (cn == kChunk) {
      for (int j = 0; j < int(kChunk); ++j) v[placed(j)] = _mm512_abs_ps(_mm512_loadu_ps(w + 16 * (c0 + size_t(j))));
      _mm512_store_ps(amax_of, tree16_x16_placed(v, max16));
    } else {
      for (size_t j = 0; j < cn; ++j) amax_of[j] = _mm512_reduce_max_ps(_mm512_abs_ps(_mm512_loadu_ps(w + 16 * (c0 + j))));
    }
    for (size_t j = 0; j < cn; ++j) {
      const size_t i = c0 + j;
      const float amax = amax_of[j];
      fixed_of[j] = true;
      if (amax == 0.0f) {
        byte_of[j] = t.zero_byte;
        continue;
      }
      const int b0 = rd_detail::absmax_byte(amax, t.gs);
      const int first = std::max(1, b0 - t.below), last = std::min(0x7E, b0 + t.above);
      int n = t.usable_prefix[last + 1] - t.usable_prefix[first];
      byte_of[j] = b0;
      if (n == 0) continue;
      fixed_of[j] = false;
      if (n == last - first + 1) {
        for (int k = 0; k < n; ++k) cb[k] = first + k;
      } else {
        n = 0;
        for (int b = first; b <= last; ++b)
          if (t.usable[b]) cb[n++] = b;
      }
      const __m512 wv = _mm512_loadu_ps(w + 16 * i);
      const __m512 x = _mm512_abs_ps(wv);
      const __m512i sign16 = _mm512_maskz_mov_epi32(_mm512_cmp_ps_mask(wv, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_set1_epi32(16));
      const __m512 wtv = wt ? _mm512_loadu_ps(wt + 16 * i) : _mm512_set1_ps(1.0f);
      // Two candidates per weight where the third provably cannot cost less (rd_prepare's pair
      // tables): the same lowest costs, hence the same totals.
      const bool two = !wt && t.need3_prefix[last + 1] == t.need3_prefix[first] && amax * t.R[cb[0]] < rd_detail::kPruneMaxA;
      if (!wt && n == 16 && cb[15] == cb[0] + 15) {  // the usual case: 16 consecutive bytes, unrolled
        const int b1 = cb[0];
        if (two) {
#pragma GCC unroll 16
          for (int k = 0; k < 16; ++k) {
            const int b = b1 + k;
            const __m512i wq = lo_table_index<true>(x, &t.R[b], sign16);
            v[placed(k)] = _mm512_min_ps(pair_cost(wq, x, t.pairM[b][0], t.pairL[b][0]), pair_cost(wq, x, t.pairM[b][1], t.pairL[b][1]));
          }
        } else {
#pragma GCC unroll 16
          for (int k = 0; k < 16; ++k) {
            const int b = b1 + k;
            const __m512i wq = lo_table_index<false>(x, &t.R[b], sign16);
            const __m512 c0 = candidate_cost(wq, x, _mm512_load_ps(t.magSc[b][0]), wtv, false, Lc_lo[0], Lc_hi[0]);
            const __m512 c1 = candidate_cost(wq, x, _mm512_load_ps(t.magSc[b][1]), wtv, false, Lc_lo[1], Lc_hi[1]);
            const __m512 c2 = candidate_cost(wq, x, _mm512_load_ps(t.magSc[b][2]), wtv, false, Lc_lo[2], Lc_hi[2]);
            v[placed(k)] = _mm512_min_ps(_mm512_min_ps(c0, c1), c2);
          }
        }
        const __m512 total = _mm512_add_ps(_mm512_loadu_ps(t.Ls + b1), tree16_x16_placed(v, add16));
        const __mmask16 at = _mm512_cmp_ps_mask(total, _mm512_set1_ps(_mm512_reduce_min_ps(total)), _CMP_EQ_OQ);
        byte_of[j] = b1 + (at ? __builtin_ctz(unsigned(at)) : 0);
        continue;
      }
      float best_total = 0;
      int best = -1;
      for (int g = 0; g < n; g += 16) {
        const int cnt = std::min(16, n - g);
        // The best cost per weight: its value does not depend on which of equal costs wins, so a
        // plain minimum; the winning codes are worked out for the chosen candidate only (below).
        if (two) {
          for (int k = 0; k < cnt; ++k) {
            const int b = cb[g + k];
            const __m512i wq = lo_table_index<true>(x, &t.R[b], sign16);
            v[k] = _mm512_min_ps(pair_cost(wq, x, t.pairM[b][0], t.pairL[b][0]), pair_cost(wq, x, t.pairM[b][1], t.pairL[b][1]));
            ls[k] = t.Ls[b];
          }
        } else {
          for (int k = 0; k < cnt; ++k) {
            const int b = cb[g + k];
            const __m512i wq = lo_table_index<false>(x, &t.R[b], sign16);
            __m512 best_c = candidate_cost(wq, x, _mm512_load_ps(t.magSc[b][0]), wtv, wt != nullptr, Lc_lo[0], Lc_hi[0]);
            for (int c = 1; c < 3; ++c)
              best_c = _mm512_min_ps(best_c, candidate_cost(wq, x, _mm512_load_ps(t.magSc[b][c]), wtv, wt != nullptr, Lc_lo[c], Lc_hi[c]));
            v[k] = best_c;
            ls[k] = t.Ls[b];
          }
        }
        for (int k = cnt; k < 16; ++k) {
          v[k] = inf;
          ls[k] = 0;
        }
        const __m512 total = _mm512_add_ps(_mm512_load_ps(ls), tree16_x16(v, add16));
        const __mmask16 valid = __mmask16((1u << cnt) - 1);
        const float lowest = _mm512_mask_reduce_min_ps(valid, total);
        const __mmask16 at = _mm512_mask_cmp_ps_mask(valid, total, _mm512_set1_ps(lowest), _CMP_EQ_OQ);
        if (best < 0 || lowest < best_total) {
          best_total = lowest;
          best = cb[g + (at ? __builtin_ctz(unsigned(at)) : 0)];
        }
      }
      byte_of[j] = best;
    }
    for (size_t j = 0; j < cn; ++j) {
      const size_t i = c0 + j;
      const float* wb = w + 16 * i;
      if (fixed_of[j]) {
        scales[i] = rd_detail::fixed_block(wb, uint8_t(byte_of[j]), codes + 16 * i, sq_err);
        continue;
      }
      const int best = byte_of[j];
      const __m512 wv = _mm512_loadu_ps(wb);
      const __m512 x = _mm512_abs_ps(wv);
      const __m512i sign16 = _mm512_maskz_mov_epi32(_mm512_cmp_ps_mask(wv, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_set1_epi32(16));
      const __m512 wtv = wt ? _mm512_loadu_ps(wt + 16 * i) : _mm512_set1_ps(1.0f);
      // The chosen candidate's codes: the first of the lowest costs among lo − 1, lo, lo + 1.
      const __m512i wq = lo_table_index<false>(x, &t.R[best], sign16);
      __m512 best_c = candidate_cost(wq, x, _mm512_load_ps(t.magSc[best][0]), wtv, wt != nullptr, Lc_lo[0], Lc_hi[0]);
      __m512i best_idx = _mm512_permutex2var_epi32(cand_lo[0], wq, cand_hi[0]);
      for (int c = 1; c < 3; ++c) {
        const __m512 cost = candidate_cost(wq, x, _mm512_load_ps(t.magSc[best][c]), wtv, wt != nullptr, Lc_lo[c], Lc_hi[c]);
        const __mmask16 lower = _mm512_cmp_ps_mask(cost, best_c, _CMP_LT_OQ);
        best_c = _mm512_mask_mov_ps(best_c, lower, cost);
        best_idx = _mm512_mask_mov_epi32(best_idx, lower, _mm512_permutex2var_epi32(cand_lo[c], wq, cand_hi[c]));
      }
      // Index 8 (a negative weight's zero) is code 0.
      const __m512i code = _mm512_maskz_mov_epi32(_mm512_test_epi32_mask(best_idx, seven), best_idx);
      scales[i] = uint8_t(best);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + 16 * i), _mm512_cvtepi32_epi8(code));
      if (sq_err) *sq_err += tree16_sq_err(_mm512_mul_ps(_mm512_permutexvar_ps(code, value), _mm512_set1_ps(t.S[best])), wv);
    }
  }
}

}  // namespace fp4z
