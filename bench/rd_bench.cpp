// rd quantization speed, one thread, in BF16 input bytes per CPU second: without calibration the block
// kernel alone (scalar, AVX2, AVX-512), one pass with fixed tables, the per-tensor-tables layer job; with
// calibration the code refinement. The whole `fp4z quantize --method rd` process is timed by bench/rd_speed.sh.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "common/cpu.h"
#include "format/dtype.h"
#include "nvfp4/rd.h"
#include "pipeline/rd_layer.h"
#include "pipeline/rd_plain.h"

using namespace fp4z;

namespace {

constexpr int64_t kRows = 256, kCols = 2560;  // 256 rows of a q_proj (bytes per second scale to the full tensor)

struct Fixture {
  std::vector<float> w;  // BF16 values widened to f32 (what the job sees after loading a BF16 row)
  float gs = 1;
  RdCostTables tables{};
  Fixture() {
    std::mt19937 rng(1);
    std::student_t_distribution<float> t(5.0f);
    w.resize(size_t(kRows * kCols));
    float amax = 0;
    for (auto& x : w) {
      x = bf16_to_f32(f32_to_bf16_rne(0.02f * t(rng)));
      amax = std::max(amax, std::fabs(x));
    }
    gs = 2688.0f / (amax * 4.0f);
    RdLayerResult r = rd_quantize_layer(w.data(), kRows, kCols, nullptr, gs, 0.0, 0.01, 1);
    tables = rd_costs_from_histogram(r.hist);
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

// The block decision kernel alone over the slice (no packing, no threads): scalar, AVX2, AVX-512.
void rd_block_kernel(benchmark::State& state, RdBlocksKernel kernel, CpuFeature needs) {
  Fixture& f = fixture();
  if (needs != CpuFeature{} && !cpu_features().has(needs)) {
    state.SkipWithError("this CPU lacks the kernel's instruction set");
    return;
  }
  RdBlockParams p;
  p.gs = f.gs;
  p.lambda = float(state.range(0)) * 1e-7f;
  p.costs = &f.tables;
  const RdPrepared t = rd_prepare(p);
  std::vector<uint8_t> codes(static_cast<size_t>(kCols)), scales(static_cast<size_t>(kRows * kCols / 16));
  for (auto _ : state) {
    double sq = 0;
    for (int64_t r = 0; r < kRows; ++r)
      kernel(t, f.w.data() + r * kCols, nullptr, size_t(kCols / 16), codes.data(), scales.data() + r * kCols / 16, &sq);
    benchmark::DoNotOptimize(sq);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * kRows * kCols * 2);
}
BENCHMARK_CAPTURE(rd_block_kernel, scalar, rd_choose_blocks_scalar, CpuFeature{})->Arg(0)->Arg(50)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime();
BENCHMARK_CAPTURE(rd_block_kernel, avx2, rd_choose_blocks_avx2, CpuFeature::kAvx2)->Arg(0)->Arg(50)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime();
BENCHMARK_CAPTURE(rd_block_kernel, avx512, rd_choose_blocks_avx512, CpuFeature::kAvx512)->Arg(0)->Arg(10)->Arg(50)->Arg(200)->Arg(1000)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime();

// One rd pass with fixed (model-wide) tables: what `--rd-tables pooled` does per layer per run.
void BM_RdPassFixedTables(benchmark::State& state) {
  Fixture& f = fixture();
  RdBlockParams p;
  p.gs = f.gs;
  p.lambda = float(state.range(0)) * 1e-7f;
  p.costs = &f.tables;
  std::vector<uint8_t> packed(size_t(kRows * kCols / 2)), scales(size_t(kRows * kCols / 16));
  for (auto _ : state) {
    rd_quantize_pass(f.w.data(), kRows, kCols, nullptr, p, packed.data(), scales.data(), 1);
    benchmark::DoNotOptimize(packed.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * kRows * kCols * 2);  // BF16 input bytes
}
BENCHMARK(BM_RdPassFixedTables)->Arg(0)->Arg(50)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime();

// What the job does per tensor without calibration: the pass straight from the BF16 rows (conversion,
// decisions, packing, histogram, row errors).
void BM_RdPlainLayerBf16(benchmark::State& state) {
  Fixture& f = fixture();
  std::vector<uint16_t> bf16(f.w.size());
  for (size_t i = 0; i < bf16.size(); ++i) bf16[i] = f32_to_bf16_rne(f.w[i]);
  for (auto _ : state) {
    RdLayerResult r = rd_plain_layer(reinterpret_cast<const uint8_t*>(bf16.data()), DType::BF16, kRows, kCols, f.gs,
                                     double(state.range(0)) * 1e-7, 1, f.tables);
    benchmark::DoNotOptimize(r.packed.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * kRows * kCols * 2);
}
BENCHMARK(BM_RdPlainLayerBf16)->Arg(0)->Arg(50)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime();

// The layer job with the tensor's own tables: 1 + kRdRatePasses passes plus the metrics.
void BM_RdLayerTensorTables(benchmark::State& state) {
  Fixture& f = fixture();
  for (auto _ : state) {
    RdLayerResult r = rd_quantize_layer(f.w.data(), kRows, kCols, nullptr, f.gs, 1e-6, 0.01, 1);
    benchmark::DoNotOptimize(r.packed.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * kRows * kCols * 2);
}
BENCHMARK(BM_RdLayerTensorTables)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime();

// The calibrated path's coordinate descent on the codes (rd_refine_codes, 4 sweeps) after one feedback
// pass, with H = XᵀX/T of correlated inputs (each a random mix of 64 shared factors plus noise).
void BM_RdRefine(benchmark::State& state) {
  Fixture& f = fixture();
  constexpr int64_t T = 512, kFactors = 64;
  std::mt19937 rng(2);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> mix(static_cast<size_t>(kFactors * kCols)), z(static_cast<size_t>(kFactors)), x(static_cast<size_t>(kCols));
  for (auto& v : mix) v = 0.3f * nd(rng);
  std::vector<double> H(size_t(kCols * kCols), 0.0);
  for (int64_t t = 0; t < T; ++t) {
    for (auto& v : z) v = nd(rng);
    for (int64_t k = 0; k < kCols; ++k) {
      float s = nd(rng);
      for (int64_t q = 0; q < kFactors; ++q) s += z[size_t(q)] * mix[size_t(q * kCols + k)];
      x[size_t(k)] = s;
    }
    for (int64_t i = 0; i < kCols; ++i)
      for (int64_t j = 0; j <= i; ++j) H[size_t(i * kCols + j)] += double(x[size_t(i)]) * x[size_t(j)] / T;
  }
  std::vector<float> Hf(H.size());
  for (int64_t i = 0; i < kCols; ++i)
    for (int64_t j = 0; j <= i; ++j) Hf[size_t(i * kCols + j)] = Hf[size_t(j * kCols + i)] = float(H[size_t(i * kCols + j)]);
  const RdHessian h = rd_prepare_hessian(std::move(Hf), kCols, 0.03, 1);
  RdBlockParams p;
  p.gs = f.gs;
  p.lambda = float(state.range(0)) * 1e-7f;
  p.costs = &f.tables;
  std::vector<uint8_t> packed(size_t(kRows * kCols / 2)), scales(size_t(kRows * kCols / 16)), work(packed.size());
  rd_quantize_pass(f.w.data(), kRows, kCols, h.U.data(), p, packed.data(), scales.data(), 1);
  for (auto _ : state) {
    work = packed;
    rd_refine_codes(f.w.data(), kRows, kCols, h, p, work.data(), scales.data(), 4, 1);
    benchmark::DoNotOptimize(work.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * kRows * kCols * 2);
}
BENCHMARK(BM_RdRefine)->Arg(0)->Arg(50)->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime();

}  // namespace

BENCHMARK_MAIN();
