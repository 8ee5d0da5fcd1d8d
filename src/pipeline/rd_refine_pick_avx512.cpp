// AVX-512 twin of rd_refine_pick_scalar: the 16 changes of a row as two 8-double vectors, the scan only for rows that improve.
#include <immintrin.h>

#include "pipeline/rd_refine_pick.h"

namespace fp4z::kernels {

void rd_refine_pick_avx512(const RdRefineColumn& col, int64_t n, int8_t* pick) {
  const __m512d v0 = _mm512_loadu_pd(col.value), v1 = _mm512_loadu_pd(col.value + 8);
  const __m512d k0 = _mm512_loadu_pd(col.cost), k1 = _mm512_loadu_pd(col.cost + 8);
  const __m512d two = _mm512_set1_pd(2.0), hjj = _mm512_set1_pd(col.hjj), lambda = _mm512_set1_pd(col.lambda);
  const __m512d margin = _mm512_set1_pd(-1e-18);
  for (int64_t t = 0; t < n; ++t) {
    pick[t] = -1;
    if (!col.active[t]) continue;
    const int c = col.codes[t * col.K];
    const __m512d vc = _mm512_set1_pd(col.value[c]), kc = _mm512_set1_pd(col.cost[c]);
    const __m512d g = _mm512_set1_pd(double(col.g[t * col.K])), S = _mm512_set1_pd(col.S[t * col.Sstride]);
    // Δ = ((2·d)·g + (d·d)·hjj) + λ·(cost[c2] − cost[c]), d = (value[c2] − value[c])·S: the scalar order.
    auto delta = [&](__m512d v, __m512d k) {
      const __m512d d = _mm512_mul_pd(_mm512_sub_pd(v, vc), S);
      const __m512d lin = _mm512_mul_pd(_mm512_mul_pd(two, d), g), quad = _mm512_mul_pd(_mm512_mul_pd(d, d), hjj);
      return _mm512_add_pd(_mm512_add_pd(lin, quad), _mm512_mul_pd(lambda, _mm512_sub_pd(k, kc)));
    };
    const __m512d d0 = delta(v0, k0), d1 = delta(v1, k1);
    // Allowed: not the current code, not 8 (−0 is always written as +0).
    const uint32_t allowed = 0xFFFFu & ~(1u << 8) & ~(1u << c);
    const uint32_t below = uint32_t(_mm512_cmp_pd_mask(d0, margin, _CMP_LT_OQ)) | (uint32_t(_mm512_cmp_pd_mask(d1, margin, _CMP_LT_OQ)) << 8);
    if (!(below & allowed)) continue;
    alignas(64) double dl[16];
    _mm512_store_pd(dl, d0);
    _mm512_store_pd(dl + 8, d1);
    double best = 0;
    for (int c2 = 0; c2 < 16; ++c2)
      if (c2 != 8 && c2 != c && dl[c2] < best - 1e-18) {
        best = dl[c2];
        pick[t] = int8_t(c2);
      }
  }
}

}  // namespace fp4z::kernels
