// AVX-512 BF16 kernel of the BF16-activation prompt path (vdpbf16ps); called only when the CPU has AVX512_BF16.
// gcc 12's AVX-512 cast/extract intrinsics use _mm*_undefined_*() and trip -Wuninitialized.
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "model/linear.h"
#include "model/linear_avx512_inl.h"
#include "nvfp4/codec.h"

namespace fp4z::kernels {

namespace {

constexpr int kTileT = 6;
constexpr int kTileR = 4;

// y[t*ldy + r] += Σ_j w[r*ldw + j]·x[t*ldx + j] with BF16 operands and f32 accumulation
// (vdpbf16ps sums adjacent pairs, so both operands stay in plain column order).
template <int R, int TT>
void micro_bf16(const uint16_t* w, int64_t ldw, const uint16_t* x, int64_t ldx, int64_t len, float* y, int64_t ldy) {
  __m512 acc[R][TT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < TT; ++t) acc[r][t] = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 32 <= len; j += 32) {
    __m512bh wv[R];
    for (int r = 0; r < R; ++r) wv[r] = (__m512bh)_mm512_loadu_si512(w + r * ldw + j);
    for (int t = 0; t < TT; ++t) {
      __m512bh xv = (__m512bh)_mm512_loadu_si512(x + t * ldx + j);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv[r], xv);
    }
  }
  if (j < len) {
    __mmask32 m = __mmask32((1u << (len - j)) - 1);
    __m512bh wv[R];
    for (int r = 0; r < R; ++r) wv[r] = (__m512bh)_mm512_maskz_loadu_epi16(m, w + r * ldw + j);
    for (int t = 0; t < TT; ++t) {
      __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(m, x + t * ldx + j);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_dpbf16_ps(acc[r][t], wv[r], xv);
    }
  }
  for (int t = 0; t < TT; ++t)
    for (int r = 0; r < R; ++r) y[t * ldy + r] += hsum(acc[r][t]);
}

template <int R>
void micro_bf16_rows(const uint16_t* w, int64_t ldw, const uint16_t* x, int64_t ldx, int64_t len, int tt, float* y, int64_t ldy) {
  switch (tt) {
    case 1: micro_bf16<R, 1>(w, ldw, x, ldx, len, y, ldy); break;
    case 2: micro_bf16<R, 2>(w, ldw, x, ldx, len, y, ldy); break;
    case 3: micro_bf16<R, 3>(w, ldw, x, ldx, len, y, ldy); break;
    case 4: micro_bf16<R, 4>(w, ldw, x, ldx, len, y, ldy); break;
    case 5: micro_bf16<R, 5>(w, ldw, x, ldx, len, y, ldy); break;
    default: micro_bf16<R, 6>(w, ldw, x, ldx, len, y, ldy); break;
  }
}

void block_gemm_bf16(const uint16_t* w, int64_t ldw, int64_t rows, const uint16_t* x, int64_t ldx, int64_t T, int64_t len,
                     float* y, int64_t ldy) {
  for (int64_t t0 = 0; t0 < T; t0 += kTileT) {
    int tt = int(std::min<int64_t>(kTileT, T - t0));
    int64_t r = 0;
    for (; r + kTileR <= rows; r += kTileR)
      micro_bf16_rows<kTileR>(w + r * ldw, ldw, x + t0 * ldx, ldx, len, tt, y + t0 * ldy + r, ldy);
    for (; r < rows; ++r) micro_bf16_rows<1>(w + r * ldw, ldw, x + t0 * ldx, ldx, len, tt, y + t0 * ldy + r, ldy);
  }
}

}  // namespace

void rows_avx512_bf16(const Linear& w, const uint16_t* xb, int64_t T, int64_t r0, int64_t r1, float* y, float* scratch) {
  const int64_t K = w.k, N = w.n;
  for (int64_t t = 0; t < T; ++t) std::fill(y + t * N + r0, y + t * N + r1, 0.0f);
  if (w.kind == WeightKind::kBF16) {
    const uint16_t* base = reinterpret_cast<const uint16_t*>(w.data);
    for (int64_t c0 = 0; c0 < K; c0 += kPanelK)
      block_gemm_bf16(base + r0 * K + c0, K, r1 - r0, xb + c0, K, T, std::min(kPanelK, K - c0), y + r0, N);
    return;
  }
  // NVFP4: dequantize exactly (E2M1·E4M3 fits BF16) into a BF16 panel, via one f32 row.
  uint16_t* panel = reinterpret_cast<uint16_t*>(scratch);
  float* row = scratch + kPanelRows * kPanelK;
  for (int64_t rb = r0; rb < r1; rb += kPanelRows) {
    int64_t rows = std::min(kPanelRows, r1 - rb);
    for (int64_t c0 = 0; c0 < K; c0 += kPanelK) {
      int64_t len = std::min(kPanelK, K - c0);
      for (int64_t i = 0; i < rows; ++i) {
        dequant_nvfp4(w, rb + i, c0, len, row);
        for (int64_t j = 0; j < len; j += 16)
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(panel + i * kPanelK + j),
                              (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(row + j)));
      }
      block_gemm_bf16(panel, kPanelK, rows, xb + c0, K, T, len, y + rb, N);
    }
  }
}

}  // namespace fp4z::kernels
