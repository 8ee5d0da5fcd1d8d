// rd without calibration on one source tensor in its stored dtype: the pass with model-wide tables
// converts each row to f32 as it goes (no whole-tensor f32 copy) and counts the histogram on the way.
#pragma once
#include <cstdint>

#include "format/dtype.h"
#include "pipeline/rd_layer.h"

namespace fp4z {

// Exactly rd_quantize_layer(W, N, K, nullptr, gs, lambda, ·, threads, &tables) with W = the tensor
// `src` [N, K] (dtype `dtype`, K % 16 == 0) widened to f32: same codes, scales, histogram and MSE.
RdLayerResult rd_plain_layer(const uint8_t* src, DType dtype, int64_t N, int64_t K, float gs, double lambda, int threads,
                             const RdCostTables& tables);

}  // namespace fp4z
