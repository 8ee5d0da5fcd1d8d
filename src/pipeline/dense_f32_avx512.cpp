// AVX-512 kernel of gemm_nn_acc: C ± A·B with B packed once per 256×kNc block and A once per kMc×256 block
// (GotoBLAS structure), a kMr×32 register tile (24 accumulators), masked column edges.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <new>
#include <utility>

#include "pipeline/dense_f32.h"

namespace fp4z::kernels {

namespace {

// kc = 256 is the documented summation chunk (dense_f32.h): a tile's accumulators start from zero for each
// chunk and are added to C at its end, so every element of C sees the same operations in the same order
// wherever its tile lies — the result does not depend on the blocking or on how callers split C.
constexpr int64_t kKc = 256;
// The tile (12×32, 8×48, 6×64 measured alike within this machine's noise, ≈ 55–65 GFMA per CPU second).
constexpr int kMr = 12;              // rows of the register tile (broadcasts of A)
constexpr int kNv = 2;               // 16-float vectors per tile row: the tile is kMr × 32
constexpr int64_t kNr = 16 * kNv;    // columns of a packed micro-panel of B
constexpr int64_t kMc = 16 * kMr;    // rows of A packed per block (kMc×kKc floats = 192 KiB, L2)
constexpr int64_t kNc = 1536;        // columns of B packed per block (kKc×kNc floats = 1.5 MiB, L2)

// A grow-only 64-byte-aligned float buffer, one per thread (the Cholesky calls the product thousands of times).
struct PackBuffer {
  float* p = nullptr;
  size_t n = 0;
  ~PackBuffer() { ::operator delete[](p, std::align_val_t(64)); }
  float* get(size_t want) {
    if (want > n) {
      ::operator delete[](p, std::align_val_t(64));
      p = static_cast<float*>(::operator new[](want * sizeof(float), std::align_val_t(64)));
      n = want;
    }
    return p;
  }
};

// B[0:kc, 0:nc] (row stride ldb) into micro-panels of kNr columns: panel q holds [k][kNr], zero-padded past nc.
// Row by row (each row of B read once, in order: strided panel-by-panel reads missed the caches).
void pack_b(int64_t kc, int64_t nc, const float* B, int64_t ldb, float* out) {
  const int64_t full = nc / kNr * kNr, w = nc - full;
  __mmask16 tail[kNv];
  for (int v = 0; v < kNv; ++v) {
    const int64_t left = w - 16 * v;
    tail[v] = left >= 16 ? __mmask16(0xFFFF) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1);
  }
  for (int64_t k = 0; k < kc; ++k) {
    const float* b = B + k * ldb;
    float* dst = out + k * kNr;
    for (int64_t j0 = 0; j0 < full; j0 += kNr)
      for (int v = 0; v < kNv; ++v) _mm512_store_ps(dst + j0 * kc + 16 * v, _mm512_loadu_ps(b + j0 + 16 * v));
    if (w > 0)
      for (int v = 0; v < kNv; ++v) _mm512_store_ps(dst + full * kc + 16 * v, _mm512_maskz_loadu_ps(tail[v], b + full + 16 * v));
  }
}

// A[0:mc, 0:kc] (row stride lda) into micro-panels of kMr rows: panel p holds [k][kMr], zero-padded past mc.
// Full groups of 4 rows × 4 k go through a 4×4 transpose in registers (the scalar copy cost a quarter of
// the products' time at Kd or N = 128).
void pack_a(int64_t mc, int64_t kc, const float* A, int64_t lda, float* out) {
  static_assert(kMr % 4 == 0, "4-row groups");
  for (int64_t i0 = 0; i0 < mc; i0 += kMr) {
    const int64_t h = std::min<int64_t>(kMr, mc - i0);
    float* dst = out + i0 * kc;
    const int64_t h4 = h / 4 * 4, k4 = kc / 4 * 4;
    for (int64_t r = 0; r < h4; r += 4) {
      const float* a = A + (i0 + r) * lda;
      for (int64_t k = 0; k < k4; k += 4) {
        __m128 x0 = _mm_loadu_ps(a + k), x1 = _mm_loadu_ps(a + lda + k), x2 = _mm_loadu_ps(a + 2 * lda + k),
               x3 = _mm_loadu_ps(a + 3 * lda + k);
        _MM_TRANSPOSE4_PS(x0, x1, x2, x3);
        _mm_storeu_ps(dst + k * kMr + r, x0);
        _mm_storeu_ps(dst + (k + 1) * kMr + r, x1);
        _mm_storeu_ps(dst + (k + 2) * kMr + r, x2);
        _mm_storeu_ps(dst + (k + 3) * kMr + r, x3);
      }
      for (int64_t q = 0; q < 4; ++q)
        for (int64_t k = k4; k < kc; ++k) dst[k * kMr + r + q] = a[q * lda + k];
    }
    for (int64_t r = h4; r < h; ++r) {
      const float* a = A + (i0 + r) * lda;
      for (int64_t k = 0; k < kc; ++k) dst[k * kMr + r] = a[k];
    }
    for (int64_t r = h; r < kMr; ++r)
      for (int64_t k = 0; k < kc; ++k) dst[k * kMr + r] = 0.0f;
  }
}

// One register tile: C[0:MR, 0:16·NV] (masked by m) ± Σ_k a[k][r]·b[k][:], a and b packed (strides kMr, kNr).
template <int MR, int NV>
void tile(int64_t kc, const float* a, const float* b, float* C, int64_t ldc, float sign_f, const __mmask16* m) {
  const __m512 sign = _mm512_set1_ps(sign_f);
  __m512 acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    __m512 bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_load_ps(b + k * kNr + 16 * v);
    for (int r = 0; r < MR; ++r) {
      const __m512 ar = _mm512_set1_ps(a[k * kMr + r]);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(ar, bv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) {
      float* c = C + r * ldc + 16 * v;
      _mm512_mask_storeu_ps(c, m[v], _mm512_fmadd_ps(sign, acc[r][v], _mm512_maskz_loadu_ps(m[v], c)));
    }
}

using TileFn = void (*)(int64_t, const float*, const float*, float*, int64_t, float, const __mmask16*);

// kTiles[nv − 1][rows − 1]: the tile for an edge of `rows` rows and nv vectors of columns.
template <int NV, size_t... R>
constexpr std::array<TileFn, sizeof...(R)> tiles_of_width(std::index_sequence<R...>) {
  return {&tile<int(R) + 1, NV>...};
}
template <size_t... V>
constexpr std::array<std::array<TileFn, kMr>, sizeof...(V)> all_tiles(std::index_sequence<V...>) {
  return {tiles_of_width<int(V) + 1>(std::make_index_sequence<kMr>())...};
}
constexpr auto kTiles = all_tiles(std::make_index_sequence<kNv>());

}  // namespace

void gemm_nn_acc_avx512(int64_t M, int64_t N, int64_t Kd, const float* A, int64_t lda, const float* B, int64_t ldb,
                        float* C, int64_t ldc, float sign) {
  if (M <= 0 || N <= 0 || Kd <= 0) return;
  thread_local PackBuffer a_buf, b_buf;
  const int64_t nc_max = std::min(kNc, (N + kNr - 1) / kNr * kNr), mc_max = std::min(kMc, (M + kMr - 1) / kMr * kMr);
  const int64_t kc_max = std::min(kKc, Kd);
  float* bp = b_buf.get(size_t(kc_max * nc_max));
  float* ap = a_buf.get(size_t(kc_max * mc_max));
  for (int64_t jc = 0; jc < N; jc += kNc) {
    const int64_t nc = std::min(kNc, N - jc);
    for (int64_t pc = 0; pc < Kd; pc += kKc) {
      const int64_t kc = std::min(kKc, Kd - pc);
      pack_b(kc, nc, B + pc * ldb + jc, ldb, bp);
      for (int64_t ic = 0; ic < M; ic += kMc) {
        const int64_t mc = std::min(kMc, M - ic);
        pack_a(mc, kc, A + ic * lda + pc, lda, ap);
        // One micro-panel of A (kMr × kc, 12 KiB) stays in L1 while the packed B block streams from L2.
        for (int64_t ir = 0; ir < mc; ir += kMr) {
          const int64_t rows = std::min<int64_t>(kMr, mc - ir);
          for (int64_t jr = 0; jr < nc; jr += kNr) {
            const int64_t w = std::min(kNr, nc - jr);
            __mmask16 m[kNv];
            for (int v = 0; v < kNv; ++v) {
              const int64_t left = w - 16 * v;
              m[v] = left >= 16 ? __mmask16(0xFFFF) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1);
            }
            kTiles[size_t((w + 15) / 16 - 1)][size_t(rows - 1)](kc, ap + ir * kc, bp + jr * kc, C + (ic + ir) * ldc + jc + jr,
                                                                ldc, sign, m);
          }
        }
      }
    }
  }
}

}  // namespace fp4z::kernels

namespace fp4z::kernels {

void cholesky_panel_rows_avx512(float* rows, int64_t ld, int64_t R, const double* d, int64_t b, double* x) {
  // x is [b][32] doubles (rows past R are zero); row j of x is kept in 4 registers while the earlier rows
  // k < j are subtracted in order, with a separate multiply and subtract as in the scalar path.
  constexpr int64_t P = kCholPanelRows;
  static_assert(P == 32, "four 8-double vectors per panel row");
  for (int64_t j = 0; j < b; ++j)
    for (int64_t r = R; r < P; ++r) x[j * P + r] = 0.0;
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = 0; j < b; ++j) x[j * P + r] = rows[r * ld + j];
  for (int64_t j = 0; j < b; ++j) {
    double* xj = x + j * P;
    __m512d acc[4];
    for (int v = 0; v < 4; ++v) acc[v] = _mm512_loadu_pd(xj + 8 * v);
    for (int64_t k = 0; k < j; ++k) {
      const __m512d djk = _mm512_set1_pd(d[j * b + k]);
      const double* xk = x + k * P;
      for (int v = 0; v < 4; ++v) acc[v] = _mm512_sub_pd(acc[v], _mm512_mul_pd(_mm512_loadu_pd(xk + 8 * v), djk));
    }
    const __m512d djj = _mm512_set1_pd(d[j * b + j]);
    for (int v = 0; v < 4; ++v) _mm512_storeu_pd(xj + 8 * v, _mm512_div_pd(acc[v], djj));
  }
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = 0; j < b; ++j) rows[r * ld + j] = float(x[j * P + r]);
}

}  // namespace fp4z::kernels
