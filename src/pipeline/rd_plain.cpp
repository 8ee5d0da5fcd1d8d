// rd without calibration straight from the source tensor: row-wise f32 conversion fused into the
// pooled-tables pass, histogram counted per batch of rows while they are in cache.
#include "pipeline/rd_plain.h"

#include <chrono>
#include <mutex>
#include <vector>

#include "common/parallel.h"
#include "nvfp4/codec.h"

namespace fp4z {

RdLayerResult rd_plain_layer(const uint8_t* src, DType dtype, int64_t N, int64_t K, float gs, double lambda, int threads,
                             const RdCostTables& tables) {
  auto t0 = std::chrono::steady_clock::now();
  RdLayerResult res;
  res.packed.resize(size_t(N * K / 2));
  res.scales.resize(size_t(N * K / 16));
  res.costs = tables;
  RdBlockParams p;
  p.gs = gs;
  p.lambda = float(lambda);  // as rd_quantize_layer narrows it
  p.costs = &tables;
  const RdPrepared prep = rd_prepare(p);
  const int64_t nb = K / 16;
  const size_t row_bytes = size_t(K) * dtype_size(dtype);
  constexpr int64_t kBatch = 16;  // rows per histogram update (their output is still in cache)
  std::vector<double> row_sq(static_cast<size_t>(N));
  std::mutex hist_mu;
  parallel_for(size_t(N), threads, size_t(kBatch), [&](size_t b, size_t e) {
    std::vector<float> row(static_cast<size_t>(K));
    std::vector<uint8_t> codes(static_cast<size_t>(K));
    Nvfp4Histogram h;
    for (size_t r0 = b; r0 < e; r0 += kBatch) {
      const size_t r1 = std::min(e, r0 + kBatch);
      for (size_t r = r0; r < r1; ++r) {
        convert_to_f32(src + r * row_bytes, dtype, size_t(K), row.data());
        double sq = 0;
        rd_choose_blocks(prep, row.data(), nullptr, size_t(nb), codes.data(), res.scales.data() + int64_t(r) * nb, &sq);
        row_sq[r] = sq;
        pack_nibbles(codes.data(), size_t(K), res.packed.data() + int64_t(r) * K / 2);
      }
      h.add_packed(res.packed.data() + int64_t(r0) * K / 2, (r1 - r0) * size_t(K) / 2);
      h.add_scales(res.scales.data() + int64_t(r0) * nb, (r1 - r0) * size_t(nb));
    }
    std::lock_guard<std::mutex> lk(hist_mu);
    res.hist.merge(h);
  });
  double sq = 0;
  for (int64_t r = 0; r < N; ++r) sq += row_sq[size_t(r)];
  res.mse = N * K > 0 ? sq / double(N * K) : 0;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace fp4z
