// Seed-mode and absmax quantization of one Qwen3-4B down_proj-shaped BF16 tensor (2560 x 9728), all metrics included.
#include <benchmark/benchmark.h>

#include <random>
#include <thread>
#include <vector>

#include "common/cpu.h"
#include "format/dtype.h"
#include "nvfp4/scales.h"
#include "pipeline/layer_quant.h"

using namespace fp4z;

namespace {

constexpr int64_t kRows = 2560, kCols = 9728;

struct Fixture {
  std::vector<uint16_t> bf16;
  LayerEncoding tpl;
  SeedScales sc;
  Fixture() {
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    bf16.resize(size_t(kRows * kCols));
    for (auto& h : bf16) h = f32_to_bf16_rne(nd(rng));
    WeightView w{reinterpret_cast<const uint8_t*>(bf16.data()), DType::BF16, kRows, kCols};
    bool finite;
    float gs = absmax_global_scale(weight_amax(w, 2, &finite), SourceRounding::kBF16);
    absmax_encode(w, gs, false, 2, nv_kernels(detect_isa()), tpl);
    sc = seed_scales(tpl.scales.data(), tpl.scales.size(), tpl.global_scale, 2.0f);
  }
  WeightView view() const { return {reinterpret_cast<const uint8_t*>(bf16.data()), DType::BF16, kRows, kCols}; }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

void BM_SeedDownProj(benchmark::State& state) {
  Fixture& f = fixture();
  const NvKernels& k = nv_kernels(Isa(state.range(1)) > detect_isa() ? detect_isa() : Isa(state.range(1)));
  int threads = int(state.range(0));
  LayerEncoding out;  // reused across iterations, as the pipeline reuses it across layers
  for (auto _ : state) {
    seed_encode(f.view(), f.tpl.packed.data(), f.sc, f.tpl.global_scale, seed_global_scale(f.sc.M), false, threads, k, out);
    benchmark::DoNotOptimize(out.packed.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * kRows * kCols * 2);
  state.SetLabel(std::string(isa_name(k.isa)) + " threads=" + std::to_string(threads));
}

void BM_AbsmaxDownProj(benchmark::State& state) {
  Fixture& f = fixture();
  const NvKernels& k = nv_kernels(detect_isa());
  int threads = int(state.range(0));
  LayerEncoding out;
  for (auto _ : state) {
    bool finite;
    float gs = absmax_global_scale(weight_amax(f.view(), threads, &finite), SourceRounding::kBF16);
    absmax_encode(f.view(), gs, false, threads, k, out);
    benchmark::DoNotOptimize(out.packed.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * kRows * kCols * 2);
  state.SetLabel(std::string(isa_name(k.isa)) + " threads=" + std::to_string(threads));
}

int all_threads() { return int(std::max(1u, std::thread::hardware_concurrency())); }

}  // namespace

BENCHMARK(BM_SeedDownProj)->Args({1, 0})->Args({1, 1})->Args({1, 2})->Args({all_threads(), 2})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_AbsmaxDownProj)->Arg(1)->Arg(all_threads())->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
