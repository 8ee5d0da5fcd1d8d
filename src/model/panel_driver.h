// The dense-path driver shared by the SIMD linear kernels: F32/BF16 rows or dequantized NVFP4 panels fed to a block GEMM.
#pragma once
#include <algorithm>
#include <cstdint>

#include "model/linear.h"

namespace fp4z::kernels {

// Zeroes y[t, r0..r1), then accumulates rows r0..r1 of w times the T activations x in panels of
// kPanelK columns. F32/BF16 weights go to `gemm` straight from the mapping; NVFP4 rows are first
// decoded by `dequant` into `scratch` (kPanelRows x kPanelK floats). `gemm` and `dequant` are the
// including ISA file's kernels, so each instantiation is compiled with that file's target flags.
template <class BlockGemm, class Dequant>
inline void rows_by_panels(const Linear& w, const float* x, int64_t T, int64_t r0, int64_t r1, float* y, float* scratch,
                           BlockGemm gemm, Dequant dequant) {
  const int64_t K = w.k, N = w.n;
  for (int64_t t = 0; t < T; ++t) std::fill(y + t * N + r0, y + t * N + r1, 0.0f);
  if (w.kind == WeightKind::kF32) {
    const float* base = reinterpret_cast<const float*>(w.data);
    for (int64_t c0 = 0; c0 < K; c0 += kPanelK)
      gemm(base + r0 * K + c0, K, r1 - r0, x + c0, K, T, std::min(kPanelK, K - c0), y + r0, N);
    return;
  }
  if (w.kind == WeightKind::kBF16) {
    // One token (the head in generation): whole rows, so each group of rows is one contiguous
    // stream from memory instead of K/kPanelK strided passes.
    const int64_t panel = T == 1 ? K : kPanelK;
    const uint16_t* base = reinterpret_cast<const uint16_t*>(w.data);
    for (int64_t c0 = 0; c0 < K; c0 += panel)
      gemm(base + r0 * K + c0, K, r1 - r0, x + c0, K, T, std::min(panel, K - c0), y + r0, N);
    return;
  }
  for (int64_t rb = r0; rb < r1; rb += kPanelRows) {
    int64_t rows = std::min(kPanelRows, r1 - rb);
    for (int64_t c0 = 0; c0 < K; c0 += kPanelK) {
      int64_t len = std::min(kPanelK, K - c0);
      for (int64_t i = 0; i < rows; ++i) dequant(w, rb + i, c0, len, scratch + i * kPanelK);
      gemm(scratch, kPanelK, rows, x + c0, K, T, len, y + rb, N);
    }
  }
}

}  // namespace fp4z::kernels
