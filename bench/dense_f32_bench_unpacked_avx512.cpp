// The bench's baseline: gemm_nn_acc's previous AVX-512 kernel (unpacked B, 6×32 tiles over 256 k × 256 n blocks).
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

namespace fp4z::bench {

namespace {

constexpr int64_t kKc = 256, kNc = 256;

// One tile: rows [0, MR) of A/C (MR <= 6), columns [0, 32) masked by m0/m1, k over [0, kc).
template <int MR>
inline void tile(int64_t kc, const float* A, int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, __m512 sign,
                 __mmask16 m0, __mmask16 m1) {
  __m512 acc0[MR], acc1[MR];
  for (int r = 0; r < MR; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_maskz_loadu_ps(m0, B + k * ldb);
    const __m512 b1 = _mm512_maskz_loadu_ps(m1, B + k * ldb + 16);
    for (int r = 0; r < MR; ++r) {
      const __m512 a = _mm512_set1_ps(A[r * lda + k]);
      acc0[r] = _mm512_fmadd_ps(a, b0, acc0[r]);
      acc1[r] = _mm512_fmadd_ps(a, b1, acc1[r]);
    }
  }
  for (int r = 0; r < MR; ++r) {
    float* c = C + r * ldc;
    _mm512_mask_storeu_ps(c, m0, _mm512_fmadd_ps(sign, acc0[r], _mm512_maskz_loadu_ps(m0, c)));
    _mm512_mask_storeu_ps(c + 16, m1, _mm512_fmadd_ps(sign, acc1[r], _mm512_maskz_loadu_ps(m1, c + 16)));
  }
}

}  // namespace

void gemm_nn_acc_unpacked_avx512(int64_t M, int64_t N, int64_t Kd, const float* A, int64_t lda, const float* B, int64_t ldb,
                        float* C, int64_t ldc, float sign) {
  const __m512 s = _mm512_set1_ps(sign);
  for (int64_t k0 = 0; k0 < Kd; k0 += kKc) {
    const int64_t kc = std::min(kKc, Kd - k0);
    for (int64_t n0 = 0; n0 < N; n0 += kNc) {
      const int64_t n1 = std::min(N, n0 + kNc);
      for (int64_t i = 0; i < M; i += 6) {
        const int64_t mr = std::min<int64_t>(6, M - i);
        for (int64_t j = n0; j < n1; j += 32) {
          const int64_t w = n1 - j;
          const __mmask16 m0 = w >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << w) - 1);
          const __mmask16 m1 = w >= 32 ? __mmask16(0xFFFF) : w <= 16 ? __mmask16(0) : __mmask16((1u << (w - 16)) - 1);
          const float* a = A + i * lda + k0;
          const float* b = B + k0 * ldb + j;
          float* c = C + i * ldc + j;
          switch (mr) {
            case 6: tile<6>(kc, a, lda, b, ldb, c, ldc, s, m0, m1); break;
            case 5: tile<5>(kc, a, lda, b, ldb, c, ldc, s, m0, m1); break;
            case 4: tile<4>(kc, a, lda, b, ldb, c, ldc, s, m0, m1); break;
            case 3: tile<3>(kc, a, lda, b, ldb, c, ldc, s, m0, m1); break;
            case 2: tile<2>(kc, a, lda, b, ldb, c, ldc, s, m0, m1); break;
            default: tile<1>(kc, a, lda, b, ldb, c, ldc, s, m0, m1); break;
          }
        }
      }
    }
  }
}

}  // namespace fp4z::bench
