// One Linear layer's NVFP4 encoding (absmax or seed) with its report metrics, parallel over rows.
#include "pipeline/layer_quant.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <thread>

#include "common/huge_pages.h"
#include "common/parallel.h"
#include "nvfp4/codec.h"
#include "nvfp4/measure.h"
#include "nvfp4/scales.h"
#include "pipeline/amax_kernels.h"

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

// Mean and unbiased std of per-block ratios r = fl(S / max(S0, 1e-12)), where block i's ratio is
// ratio_of[codes[i]]. Eight interleaved double accumulators keep the adds independent (a single
// chain is latency-bound on million-block layers): lane i % 8 gets the i-th value, in order. The
// values added depend on the code only, so they are tabulated per code: double(r) for the mean,
// (double(r) - mean)^2 for the variance, the same roundings as computing them block by block.
void ratio_stats(const uint8_t* codes, size_t n, const float ratio_of[256], LayerMetrics& m) {
  double value[256], square[256];
  for (int c = 0; c < 256; ++c) value[c] = double(ratio_of[c]);
  auto lane_sums = [&](const double* of) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
      for (size_t k = 0; k < 8; ++k) acc[k] += of[codes[i + k]];
    for (; i < n; ++i) acc[i & 7] += of[codes[i]];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  };
  double mean = n ? lane_sums(value) / double(n) : 0;
  for (int c = 0; c < 256; ++c) {
    double d = value[c] - mean;
    square[c] = d * d;
  }
  double ss = lane_sums(square);
  m.scale_ratio_mean = double(float(mean));
  m.scale_ratio_std = n > 1 ? double(float(std::sqrt(ss / double(n - 1)))) : std::nan("");
}

}  // namespace

uint32_t abs_max_bits(const uint8_t* p, size_t n, DType dtype) {
  // Every ISA level gives the same value, so the fastest one this CPU runs is used.
  static const AmaxKernels& k = amax_kernels(Isa::kAvx512);
  return dtype == DType::F32 ? k.bits32(p, n) : k.bits16(p, n);
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
  EntropyProxyCounts counts(R * C / 2);  // taken from each work item's bytes while they are in cache
  parallel_for(R, threads, kRowGrain, [&](size_t b, size_t e) {
    std::vector<float> row(C), S(nb);
    RowStats st;
    for (size_t i = b; i < e; ++i) {
      load_row(w, i, row.data());
      k.absmax_scales_row(row.data(), C, gs, rnd, out.scales.data() + i * nb, S.data());
      k.quantize_row(row.data(), C, S.data(), canonical_zero, out.packed.data() + i * C / 2, &st);
    }
    cs.chunks[b / kRowGrain] = st;
    counts.add(out.packed.data() + b * C / 2, b * C / 2, (e - b) * C / 2);
  });
  finish_metrics(out.metrics, cs.total(), uint64_t(R) * C, counts.proxy(threads));
  out.metrics.global_scale = gs;
}

SeedScales seed_scales(const uint8_t* tpl_scale, size_t nblocks, float g_t, float alpha) {
  SeedScales sc;
  sc.codes = tpl_scale;
  sc.nblocks = nblocks;
  bool bad_code[256];
  for (int c = 0; c < 256; ++c) {
    float f = e4m3_decode(uint8_t(c));
    bad_code[c] = !(f >= 0.0f);
    sc.S0_of[c] = f / g_t;               // step 1 (true division)
    sc.D_of[c] = sc.S0_of[c] * alpha;    // step 2
  }
  bool* present = sc.present;
  for (size_t i = 0; i < nblocks; ++i) present[tpl_scale[i]] = true;
  // Step 3: the maximum over the blocks is the maximum over the codes present (std::max ignores NaN
  // the same way in either order, and M starts at +0 so signed zeros cannot differ).
  bool any_bad = false;
  for (int c = 0; c < 256; ++c) {
    if (!present[c]) continue;
    sc.M = std::max(sc.M, sc.D_of[c]);
    any_bad |= bad_code[c];
  }
  if (any_bad)
    for (size_t i = 0; i < nblocks && sc.bad_block < 0; ++i)
      if (bad_code[tpl_scale[i]]) sc.bad_block = int64_t(i);
  return sc;
}

void seed_encode(const WeightView& w, const uint8_t* tpl_packed, const SeedScales& sc, float g_t, float g1, bool canonical_zero,
                 int threads, const NvKernels& k, LayerEncoding& out, const std::function<void(size_t r0, size_t r1)>& rows_done, size_t segment_bytes) {
  const size_t R = size_t(w.rows), C = size_t(w.cols), nb = C / 16, es = dtype_size(w.dtype);
  // Steps 6-8 and the quantizer's cut-offs, once per template scale code present.
  auto tab = std::make_unique<SeedCodeTables>();
  fill_seed_code_tables(sc.S0_of, sc.D_of, sc.present, g1, *tab);
  // Everything measured of the template alone (its block-ratio statistics and its entropy proxy's byte
  // counts) runs on one more thread from the start: it overlaps the output buffers' first touch here
  // and the encoding below, instead of adding a pass to the workers or after them.
  LayerMetrics ratio_new, ratio_base;
  EntropyProxyCounts counts_base(R * C / 2);
  std::jthread template_side([&] {
    ratio_stats(sc.codes, sc.nblocks, tab->ratio, ratio_new);
    // Baseline ratios are S0 / max(S0, 1e-12): 1 for every block, 0 where S0 == 0; per code.
    float base_of[256];
    for (int c = 0; c < 256; ++c) base_of[c] = sc.S0_of[c] / std::max(sc.S0_of[c], 1e-12f);
    ratio_stats(sc.codes, sc.nblocks, base_of, ratio_base);
    counts_base.add(tpl_packed, 0, R * C / 2);
  });
  reserve_huge(out.scales, R * nb);
  reserve_huge(out.packed, R * C / 2);
  out.scales.resize(R * nb);  // every byte is written below
  out.packed.resize(R * C / 2);
  out.global_scale = g1;
  // The entropy proxies' counts are taken from each work item's bytes while they are in cache.
  EntropyProxyCounts counts_new(R * C / 2);
  ChunkedStats cs_new(R), cs_base(R);
  const bool direct = w.dtype == DType::BF16 || w.dtype == DType::F32;  // the kernel reads these as stored
  auto encode_rows = [&](size_t b, size_t e) {
    std::vector<float> row(direct ? 0 : C);
    RowStats st_new, st_base;
    for (size_t i = b; i < e; ++i) {
      const uint8_t* tscale = sc.codes + i * nb;
      uint8_t* s8 = out.scales.data() + i * nb;
      for (size_t j = 0; j < nb; ++j) s8[j] = tab->s8[tscale[j]];  // steps 6-7
      const void* src = w.data + i * C * es;
      if (!direct) {
        load_row(w, i, row.data());
        src = row.data();
      }
      double sq_new = 0, sq_base = 0;
      k.seed_row(src, w.dtype == DType::BF16, C, tscale, tpl_packed + i * C / 2, *tab, canonical_zero,
                 out.packed.data() + i * C / 2, &sq_new, &sq_base);  // steps 9-13
      st_new.sq_err += sq_new;
      st_base.sq_err += sq_base;
    }
    cs_new.chunks[b / kRowGrain] = st_new;
    cs_base.chunks[b / kRowGrain] = st_base;
    counts_new.add(out.packed.data() + b * C / 2, b * C / 2, (e - b) * C / 2);
  };
  // Segments are whole work items (multiples of kRowGrain rows); the worker that finishes a segment's
  // last work item reports it, so segments are handed on without a barrier between them.
  const size_t seg_rows = std::max<size_t>(1, segment_bytes / std::max<size_t>(1, C / 2) / kRowGrain) * kRowGrain;
  const size_t nseg = (R + seg_rows - 1) / seg_rows;
  std::unique_ptr<std::atomic<size_t>[]> items_left(new std::atomic<size_t>[nseg]);
  for (size_t s = 0; s < nseg; ++s) {
    const size_t rows = std::min(R, (s + 1) * seg_rows) - s * seg_rows;
    items_left[s].store((rows + kRowGrain - 1) / kRowGrain);
  }
  parallel_for(R, threads, kRowGrain, [&](size_t b, size_t e) {
    // One thread gets the whole range at once: it is still walked work item by work item.
    for (size_t i0 = b; i0 < e; i0 += kRowGrain) {
      encode_rows(i0, std::min(e, i0 + kRowGrain));
      const size_t s = i0 / seg_rows;
      if (items_left[s].fetch_sub(1, std::memory_order_acq_rel) == 1 && rows_done)
        rows_done(s * seg_rows, std::min(R, (s + 1) * seg_rows));
    }
  });
  const uint64_t numel = uint64_t(R) * C;
  // Zero and small-code fractions from the code counts: codes 0/8 and |value| <= 1.
  auto code_fractions = [](const EntropyProxyCounts& c, RowStats& st) {
    uint64_t h[16] = {};
    c.code_counts(h);
    for (int v = 0; v < 16; ++v) {
      if ((v & 7) == 0) st.zeros += h[v];
      if ((v & 7) <= 2) st.small += h[v];
    }
  };
  RowStats total_new = cs_new.total(), total_base = cs_base.total();
  code_fractions(counts_new, total_new);
  finish_metrics(out.metrics, total_new, numel, counts_new.proxy(threads));
  template_side.join();
  code_fractions(counts_base, total_base);
  finish_metrics(out.baseline, total_base, numel, counts_base.proxy(threads));
  out.baseline.global_scale = g_t;
  out.metrics.global_scale = g1;
  out.metrics.scale_ratio_mean = ratio_new.scale_ratio_mean;
  out.metrics.scale_ratio_std = ratio_new.scale_ratio_std;
  out.baseline.scale_ratio_mean = ratio_base.scale_ratio_mean;
  out.baseline.scale_ratio_std = ratio_base.scale_ratio_std;
}

}  // namespace fp4z
