// Side-by-side per-layer comparison of NVFP4 checkpoints against their source weights.
#include "pipeline/compare.h"

#include <array>
#include <cmath>
#include <cstring>
#include <memory>

#include "common/error.h"
#include "common/parallel.h"
#include "format/checkpoint.h"
#include "format/nvfp4_tensors.h"
#include "model/model.h"
#include "nvfp4/measure.h"
#include "nvfp4/scales.h"

namespace fp4z {

CompareResult compare_checkpoints(const std::string& reference, const std::vector<std::string>& dirs, int threads) {
  auto ref = open_checkpoint(reference);
  std::vector<std::unique_ptr<Checkpoint>> cks;
  CompareResult res;
  for (const auto& d : dirs) {
    cks.push_back(open_checkpoint(d));
    res.checkpoints.push_back(d);
  }
  res.totals.resize(dirs.size());
  std::vector<double> tot_w(dirs.size(), 0), tot_mse(dirs.size(), 0), tot_proxy(dirs.size(), 0);
  for (const auto& name : ref->names) {
    const TensorRef& w = ref->get(name);
    const TensorInfo& t = *w.info;
    if (!is_linear_weight(name, t) || !dtype_is_float_weight(t.dtype)) continue;
    std::string m = name.substr(0, name.size() - 7);
    CompareRow row;
    row.layer = m;
    row.rows = t.shape[0];
    row.cols = t.shape[1];
    const size_t R = size_t(row.rows), C = size_t(row.cols);
    for (size_t k = 0; k < cks.size(); ++k) {
      CompareCell cell;
      Nvfp4Lookup found = find_nvfp4_tensors(*cks[k], m);
      if (!found.quantized()) {
        cell.kept_dtype = found.dense ? dtype_name(found.dense->info->dtype) : "absent";
        row.cells.push_back(cell);
        continue;
      }
      Nvfp4Tensors q = require_nvfp4_tensors(found, row.rows, row.cols);
      require_usable_block_scales(q, threads);
      cell.quantized = true;
      const uint8_t* packed = q.codes->data();
      PackedWeights pw{packed, q.block_scales->data(), R, C, q.global_scale, q.global_is_divisor};
      const size_t row_bytes = C * dtype_size(t.dtype);
      RowStats st = packed_error_stats(
          pw, [&](size_t i, float* out) { convert_to_f32(w.data() + i * row_bytes, t.dtype, C, out); }, threads);
      count_codes(packed, R * C / 2, cell.hist);
      double n = double(R) * double(C);
      cell.mse = mse_of(st, uint64_t(R) * C);
      cell.zero_fraction = double(st.zeros) / n;
      cell.top_fraction = double(cell.hist[6] + cell.hist[7] + cell.hist[14] + cell.hist[15]) / n;
      cell.neg_zero_fraction = double(cell.hist[8]) / n;
      EntropyProxy ep = entropy_proxy_parallel(packed, R * C / 2, threads);
      cell.proxy = 1.0 - ep.mean_bits / 8.0;
      tot_w[k] += n;
      tot_mse[k] += n * cell.mse;
      tot_proxy[k] += n * cell.proxy;
      CompareCell& T = res.totals[k];
      T.quantized = true;
      T.zero_fraction += n * cell.zero_fraction;
      T.top_fraction += n * cell.top_fraction;
      T.neg_zero_fraction += n * cell.neg_zero_fraction;
      for (int c = 0; c < 16; ++c) T.hist[c] += cell.hist[c];
      row.cells.push_back(cell);
    }
    res.rows.push_back(std::move(row));
  }
  for (size_t k = 0; k < cks.size(); ++k) {
    CompareCell& T = res.totals[k];
    if (tot_w[k] == 0) continue;
    T.mse = tot_mse[k] / tot_w[k];
    T.proxy = tot_proxy[k] / tot_w[k];
    T.zero_fraction /= tot_w[k];
    T.top_fraction /= tot_w[k];
    T.neg_zero_fraction /= tot_w[k];
  }
  return res;
}

}  // namespace fp4z
