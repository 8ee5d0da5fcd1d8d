// Side-by-side per-layer comparison of NVFP4 checkpoints against their source weights.
#include "pipeline/compare.h"

#include <array>
#include <cmath>
#include <cstring>
#include <memory>

#include "common/error.h"
#include "common/parallel.h"
#include "format/checkpoint.h"
#include "nvfp4/codec.h"
#include "nvfp4/kernels.h"
#include "nvfp4/scales.h"

namespace fp4z {

namespace {

struct PackedLayer {
  const TensorRef* packed = nullptr;
  const TensorRef* scale = nullptr;
  float global_divisor = 1;  // W = E2M1 · dec(scale) / global_divisor
};

bool find_packed(const Checkpoint& ck, const std::string& m, PackedLayer& out) {
  const TensorRef* sc = ck.find(m + ".weight_scale");
  if (!sc) return false;
  const TensorRef* p = ck.find(m + ".weight_packed");
  const TensorRef* g = ck.find(m + ".weight_global_scale");
  if (!p) {  // ModelOpt: weight is U8, weight_scale_2 is a multiplier
    p = ck.find(m + ".weight");
    g = ck.find(m + ".weight_scale_2");
    if (!p || p->info->dtype != DType::U8 || !g) return false;
    float s2;
    std::memcpy(&s2, g->data(), 4);
    out.global_divisor = 1.0f / s2;
  } else {
    if (!g) return false;
    std::memcpy(&out.global_divisor, g->data(), 4);
  }
  if (p->info->dtype != DType::U8 || sc->info->dtype != DType::F8_E4M3 || g->info->dtype != DType::F32) return false;
  out.packed = p;
  out.scale = sc;
  return true;
}

}  // namespace

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
  const NvKernels& K = nv_kernels(detect_isa());
  for (const auto& name : ref->names) {
    const TensorRef& w = ref->get(name);
    const TensorInfo& t = *w.info;
    if (t.shape.size() != 2 || name.size() < 7 || name.compare(name.size() - 7, 7, ".weight") != 0) continue;
    if (name.find("embed") != std::string::npos || !dtype_is_float_weight(t.dtype)) continue;
    std::string m = name.substr(0, name.size() - 7);
    CompareRow row;
    row.layer = m;
    row.rows = t.shape[0];
    row.cols = t.shape[1];
    const size_t R = size_t(row.rows), C = size_t(row.cols);
    for (size_t k = 0; k < cks.size(); ++k) {
      CompareCell cell;
      PackedLayer pl;
      if (!find_packed(*cks[k], m, pl)) {
        const TensorRef* kept = cks[k]->find(name);
        cell.kept_dtype = kept ? dtype_name(kept->info->dtype) : "absent";
        row.cells.push_back(cell);
        continue;
      }
      if (pl.packed->info->shape != std::vector<int64_t>{row.rows, row.cols / 2} ||
          pl.scale->info->shape != std::vector<int64_t>{row.rows, row.cols / 16} || row.cols % 16 != 0)
        fail_input(cks[k]->dir + ": '" + m + "' packed shapes do not match the reference weight");
      cell.quantized = true;
      const uint8_t* packed = pl.packed->data();
      const uint8_t* scales = pl.scale->data();
      const size_t nb = C / 16;
      const size_t grain = 16;
      std::vector<RowStats> parts((R + grain - 1) / grain);
      std::vector<std::array<uint64_t, 16>> hists(parts.size());
      parallel_for(R, threads, grain, [&](size_t b, size_t e) {
        std::vector<float> row_w(C), S(nb);
        RowStats st;
        std::array<uint64_t, 16> h{};
        for (size_t i = b; i < e; ++i) {
          convert_to_f32(w.data() + i * C * dtype_size(t.dtype), t.dtype, C, row_w.data());
          for (size_t j = 0; j < nb; ++j) S[j] = e4m3_decode(scales[i * nb + j]) / pl.global_divisor;
          K.code_stats(packed + i * C / 2, C, S.data(), row_w.data(), &st);
          for (size_t j = 0; j < C / 2; ++j) {
            uint8_t byte = packed[i * C / 2 + j];
            ++h[byte & 0xF];
            ++h[byte >> 4];
          }
        }
        parts[b / grain] = st;
        hists[b / grain] = h;
      });
      RowStats st;
      for (size_t p = 0; p < parts.size(); ++p) {
        st.add(parts[p]);
        for (int c = 0; c < 16; ++c) cell.hist[c] += hists[p][c];
      }
      double n = double(R) * double(C);
      cell.mse = st.sq_err / n;
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
