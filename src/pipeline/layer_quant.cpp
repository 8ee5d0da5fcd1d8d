// One Linear layer's NVFP4 encoding (absmax or seed) with its report metrics, parallel over rows.
#include "pipeline/layer_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/huge_pages.h"
#include "common/parallel.h"
#include "nvfp4/codec.h"
#include "nvfp4/measure.h"
#include "nvfp4/scales.h"

namespace fp4z {

namespace {

constexpr size_t kRowGrain = 16;  // rows per work item; fixed so that results do not depend on threads

// Per-chunk statistics are summed in chunk order so that totals are independent of thread count.
struct ChunkedStats {
  std::vector<RowStats> chunks;
  explicit ChunkedStats(size_t rows) : chunks((rows + kRowGrain - 1) / kRowGrain) {}
  RowStats total() const {
    RowStats t;
    for (const auto& c : chunks) t.add(c);
    return t;
  }
};

void load_row(const WeightView& w, size_t r, float* dst) {
  size_t es = dtype_size(w.dtype);
  convert_to_f32(w.data + r * size_t(w.cols) * es, w.dtype, size_t(w.cols), dst);
}

void finish_metrics(LayerMetrics& m, const RowStats& st, uint64_t numel, const EntropyProxy& ep) {
  m.mean_entropy_bits = ep.mean_bits;
  m.std_entropy_bits = ep.std_bits;
  m.compression_rate = 1.0 - ep.mean_bits / 8.0;
  m.compressed_size_ratio = ep.mean_bits / 8.0;
  m.effective_bits_per_weight = 4.0 + 8.0 / 16.0 + 32.0 / double(numel);
  m.n_chunks = ep.n_chunks;
  // The reference reduces in f32; we accumulate in double and round the final value to f32.
  m.mse = mse_of(st, numel);
  m.zero_fraction = numel ? double(float(double(st.zeros) / double(numel))) : 0.0;
  m.small_code_fraction = numel ? double(float(double(st.small) / double(numel))) : 0.0;
}

// Mean and unbiased std of per-block ratios r = fl(S / max(S0, 1e-12)). Eight interleaved double
// accumulators keep the adds independent (a single chain is latency-bound on million-block layers).
void ratio_stats(const std::vector<float>& r, LayerMetrics& m) {
  const size_t n = r.size();
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (size_t i = 0; i < n; ++i) acc[i & 7] += r[i];
  double mean = n ? (((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))) / double(n) : 0;
  double sq[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (size_t i = 0; i < n; ++i) sq[i & 7] += (double(r[i]) - mean) * (double(r[i]) - mean);
  double ss = ((sq[0] + sq[1]) + (sq[2] + sq[3])) + ((sq[4] + sq[5]) + (sq[6] + sq[7]));
  m.scale_ratio_mean = double(float(mean));
  m.scale_ratio_std = n > 1 ? double(float(std::sqrt(ss / double(n - 1)))) : std::nan("");
}

}  // namespace

namespace {

// Largest |x| as the raw bit pattern with the sign cleared: for IEEE formats the bit patterns of
// non-negative values order like the values, and every NaN/Inf pattern is above every finite one.
// Integer max vectorises where a float max with NaN checks does not.
template <class Bits>
Bits max_abs_bits(const uint8_t* p, size_t n, Bits abs_mask) {
  Bits m = 0;
  for (size_t i = 0; i < n; ++i) {
    Bits b;
    std::memcpy(&b, p + i * sizeof(Bits), sizeof(Bits));
    b &= abs_mask;
    m = b > m ? b : m;
  }
  return m;
}

}  // namespace

uint32_t abs_max_bits(const uint8_t* p, size_t n, DType dtype) {
  return dtype == DType::F32 ? max_abs_bits<uint32_t>(p, n, 0x7FFFFFFFu) : max_abs_bits<uint16_t>(p, n, 0x7FFF);
}

float amax_of_bits(uint32_t m, DType dtype, bool* finite) {
  uint32_t inf_bits = dtype == DType::F32 ? 0x7F800000u : dtype == DType::BF16 ? 0x7F80u : 0x7C00u;
  *finite = m < inf_bits;
  if (!*finite) return INFINITY;
  uint8_t raw[4];
  std::memcpy(raw, &m, 4);  // little-endian: the low bytes hold the 16-bit pattern
  return load_float(raw, dtype, 0);
}

float weight_amax(const WeightView& w, int threads, bool* finite) {
  const size_t R = size_t(w.rows), C = size_t(w.cols), es = dtype_size(w.dtype);
  std::vector<uint32_t> part((R + kRowGrain - 1) / kRowGrain, 0);
  parallel_for(R, threads, kRowGrain, [&](size_t b, size_t e) {
    part[b / kRowGrain] = abs_max_bits(w.data + b * C * es, (e - b) * C, w.dtype);
  });
  uint32_t m = 0;
  for (uint32_t x : part) m = std::max(m, x);
  return amax_of_bits(m, w.dtype, finite);
}

void absmax_encode(const WeightView& w, float gs, bool canonical_zero, int threads, const NvKernels& k, LayerEncoding& out) {
  const size_t R = size_t(w.rows), C = size_t(w.cols), nb = C / 16;
  // Block scales round amax_b / 6 in the source dtype (F16 included; only the global scale of F16
  // sources is computed in f32, see docs/quantize.md).
  const SourceRounding rnd = w.dtype == DType::BF16 ? SourceRounding::kBF16 : w.dtype == DType::F16 ? SourceRounding::kF16 : SourceRounding::kF32;
  reserve_huge(out.packed, R * C / 2);
  reserve_huge(out.scales, R * nb);
  out.packed.resize(R * C / 2);  // every byte is written below
  out.scales.resize(R * nb);
  out.global_scale = gs;
  ChunkedStats cs(R);
  parallel_for(R, threads, kRowGrain, [&](size_t b, size_t e) {
    std::vector<float> row(C), S(nb);
    RowStats st;
    for (size_t i = b; i < e; ++i) {
      load_row(w, i, row.data());
      k.absmax_scales_row(row.data(), C, gs, rnd, out.scales.data() + i * nb, S.data());
      k.quantize_row(row.data(), C, S.data(), canonical_zero, out.packed.data() + i * C / 2, &st);
    }
    cs.chunks[b / kRowGrain] = st;
  });
  finish_metrics(out.metrics, cs.total(), uint64_t(R) * C, entropy_proxy_parallel(out.packed.data(), out.packed.size(), threads));
  out.metrics.global_scale = gs;
}

SeedScales seed_scales(const uint8_t* tpl_scale, size_t nblocks, float g_t, float alpha, bool keep_blocks) {
  SeedScales sc;
  if (keep_blocks) {
    reserve_huge(sc.S0, nblocks);
    reserve_huge(sc.D, nblocks);
    sc.S0.resize(nblocks);
    sc.D.resize(nblocks);
  }
  for (size_t i = 0; i < nblocks; ++i) {
    float f = e4m3_decode(tpl_scale[i]);
    if (!(f >= 0.0f) && sc.bad_block < 0) sc.bad_block = int64_t(i);
    float s0 = f / g_t;           // step 1 (true division)
    float d = s0 * alpha;         // step 2
    sc.M = std::max(sc.M, d);     // step 3
    if (keep_blocks) {
      sc.S0[i] = s0;
      sc.D[i] = d;
    }
  }
  return sc;
}

void seed_encode(const WeightView& w, const uint8_t* tpl_packed, const SeedScales& sc, float g_t, float g1, bool canonical_zero,
                 int threads, const NvKernels& k, LayerEncoding& out) {
  const size_t R = size_t(w.rows), C = size_t(w.cols), nb = C / 16;
  reserve_huge(out.scales, R * nb);
  reserve_huge(out.block_scale, R * nb);
  reserve_huge(out.block_ratio, R * nb);
  reserve_huge(out.packed, R * C / 2);
  out.scales.resize(R * nb);
  out.block_scale.resize(R * nb);
  out.block_ratio.resize(R * nb);
  std::vector<float>& S1 = out.block_scale;
  std::vector<float>& ratio = out.block_ratio;
  out.global_scale = g1;
  out.packed.resize(R * C / 2);  // every byte is written below
  ChunkedStats cs_new(R), cs_base(R);
  parallel_for(R, threads, kRowGrain, [&](size_t b, size_t e) {
    std::vector<float> row(C);
    RowStats st_new, st_base;
    // Steps 6-8 and the block ratios of this work item's rows.
    k.seed_scales(sc.D.data() + b * nb, sc.S0.data() + b * nb, (e - b) * nb, g1, out.scales.data() + b * nb, S1.data() + b * nb,
                  ratio.data() + b * nb);
    for (size_t i = b; i < e; ++i) {
      load_row(w, i, row.data());
      k.quantize_row(row.data(), C, S1.data() + i * nb, canonical_zero, out.packed.data() + i * C / 2, &st_new);  // 9-12
      k.code_stats(tpl_packed + i * C / 2, C, sc.S0.data() + i * nb, row.data(), &st_base);                      // 13
    }
    cs_new.chunks[b / kRowGrain] = st_new;
    cs_base.chunks[b / kRowGrain] = st_base;
  });
  uint64_t numel = uint64_t(R) * C;
  finish_metrics(out.baseline, cs_base.total(), numel, entropy_proxy_parallel(tpl_packed, out.packed.size(), threads));
  finish_metrics(out.metrics, cs_new.total(), numel, entropy_proxy_parallel(out.packed.data(), out.packed.size(), threads));
  out.baseline.global_scale = g_t;
  out.metrics.global_scale = g1;
  ratio_stats(ratio, out.metrics);
  // Baseline ratios are S0 / max(S0, 1e-12): 1 for every block, 0 where S0 == 0.
  for (size_t i = 0; i < ratio.size(); ++i) ratio[i] = sc.S0[i] / std::max(sc.S0[i], 1e-12f);
  ratio_stats(ratio, out.baseline);
}

}  // namespace fp4z
