// Side-by-side per-layer comparison of NVFP4 checkpoints of one model against its source weights.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace fp4z {

// One checkpoint's view of one layer.
struct CompareCell {
  bool quantized = false;
  std::string kept_dtype;       // when not quantized: the dtype it is stored in
  double proxy = 0;             // seed-report compression proxy of weight_packed
  double mse = 0;               // vs the reference weights (dequantized E2M1 · dec(scale) / global)
  double zero_fraction = 0;     // codes 0 and 8
  double top_fraction = 0;      // magnitudes 4 and 6 (codes 6,7,14,15)
  double neg_zero_fraction = 0; // code 8 alone
  uint64_t hist[16] = {};
};

struct CompareRow {
  std::string layer;
  int64_t rows = 0, cols = 0;
  std::vector<CompareCell> cells;  // one per checkpoint
};

struct CompareResult {
  std::vector<std::string> checkpoints;
  std::vector<CompareRow> rows;
  std::vector<CompareCell> totals;  // weighted by weight count over layers quantized in that checkpoint
};

// Every 2-D Linear weight of `reference` (embeddings excluded) is looked up in each checkpoint
// (compressed-tensors weight_packed or ModelOpt weight U8).
CompareResult compare_checkpoints(const std::string& reference, const std::vector<std::string>& dirs, int threads);

}  // namespace fp4z
