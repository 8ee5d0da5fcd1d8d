// Dense f32 products of rd calibration in GFMA per CPU second (process CPU time): the packed AVX-512 kernel
// against the previous unpacked one on the callers' shapes, and the blocked Cholesky + triangular inverse.
// Run: build/dense_f32_bench (add --benchmark_filter=... to pick shapes); see the GFMA/CPUs column. The
// previous kernel lives only in bench/dense_f32_bench_unpacked_avx512.cpp, as the baseline.
#include <benchmark/benchmark.h>

#include <array>
#include <random>
#include <vector>

#include "common/cpu.h"
#include "pipeline/dense_f32.h"

namespace fp4z::bench {
void gemm_nn_acc_unpacked_avx512(int64_t M, int64_t N, int64_t Kd, const float* A, int64_t lda, const float* B, int64_t ldb,
                                 float* C, int64_t ldc, float sign);
}

using namespace fp4z;

namespace {

std::vector<float> random_matrix(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> m(static_cast<size_t>(n));
  for (auto& x : m) x = u(rng);
  return m;
}

bool have_avx512(benchmark::State& state) {
  if (detect_isa() == Isa::kAvx512) return true;
  state.SkipWithError("no AVX-512 on this CPU");
  return false;
}

// Arguments: M, N, Kd, kernel (0 previous unpacked, 1 packed through gemm_nn_acc), threads (packed only).
void gemm(benchmark::State& state) {
  if (!have_avx512(state)) return;
  const int64_t M = state.range(0), N = state.range(1), Kd = state.range(2);
  const bool packed = state.range(3) != 0;
  const int threads = int(state.range(4));
  const auto A = random_matrix(M * Kd, 1), B = random_matrix(Kd * N, 2);
  std::vector<float> C(size_t(M * N), 0.0f);
  for (auto _ : state) {
    if (packed)
      gemm_nn_acc(M, N, Kd, A.data(), Kd, B.data(), N, C.data(), N, 1.0f, threads);
    else
      bench::gemm_nn_acc_unpacked_avx512(M, N, Kd, A.data(), Kd, B.data(), N, C.data(), N, 1.0f);
    benchmark::DoNotOptimize(C.data());
  }
  state.counters["GFMA/CPUs"] =
      benchmark::Counter(double(M) * double(N) * double(Kd) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// The shapes rd's calibrated path gives the product (threads = 1 where the caller runs it inside its own
// parallel loop): refinement start and W·D (256 rows × K × K), moments (96 rows of H, T = 2048 tokens),
// the Cholesky's trailing update (128 rows, Kd = 128), the error feedback (64 rows, Kd = 128), the first
// product of times_hd_inverse (128 rows of U × 256), and a square product split over 2 threads.
void shapes(benchmark::internal::Benchmark* b) {
  const std::vector<std::array<int64_t, 4>> s = {
      {256, 2560, 2560, 1}, {256, 9728, 9728, 1}, {256, 9728, 2560, 1}, {256, 2560, 9728, 1}, {96, 2560, 2048, 1},
      {96, 9728, 2048, 1},  {128, 2560, 128, 1},  {128, 9728, 128, 1},  {64, 2560, 128, 1},   {64, 9728, 128, 1},
      {128, 256, 2560, 1},  {128, 256, 9728, 1},  {2560, 2560, 2560, 2}};
  for (const auto& x : s)
    for (int packed : {0, 1}) b->Args({x[0], x[1], x[2], packed, packed ? x[3] : 1});
}
BENCHMARK(gemm)->Apply(shapes)->ArgNames({"M", "N", "Kd", "packed", "threads"})->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime();

// rd_correct_weight's W·D product on one 256-row chunk (K×K right operand), as main called it before the packed
// kernel (the unpacked kernel on 16 rows at a time, each call streaming all of B) and as one packed call now.
void correction_chunk(benchmark::State& state) {
  if (!have_avx512(state)) return;
  const int64_t M = 256, K = state.range(0);
  const bool packed = state.range(1) != 0;
  const auto A = random_matrix(M * K, 4), B = random_matrix(K * K, 5);
  std::vector<float> C(size_t(M * K), 0.0f);
  for (auto _ : state) {
    if (packed)
      gemm_nn_acc(M, K, K, A.data(), K, B.data(), K, C.data(), K, 1.0f, 1);
    else
      for (int64_t r = 0; r < M; r += 16)
        bench::gemm_nn_acc_unpacked_avx512(16, K, K, A.data() + r * K, K, B.data(), K, C.data() + r * K, K, 1.0f);
    benchmark::DoNotOptimize(C.data());
  }
  state.counters["GFMA/CPUs"] =
      benchmark::Counter(double(M) * double(K) * double(K) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(correction_chunk)->ArgNames({"K", "packed"})->ArgsProduct({{2560, 9728}, {0, 1}})->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime();

// Cholesky then triangular inverse of a K×K SPD matrix (rd_prepare_hessian's work): K³/3 FMA in all.
void cholesky_inverse(benchmark::State& state) {
  const int64_t K = state.range(0);
  const int threads = int(state.range(1));
  // H = I·K/4 + R·Rᵀ/K-ish: a well-conditioned SPD matrix built from a random K×64 factor.
  const int64_t r = 64;
  const auto R = random_matrix(K * r, 3);
  std::vector<float> H(size_t(K * K), 0.0f);
  std::vector<float> Rt(size_t(r * K));
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < r; ++j) Rt[size_t(j * K + i)] = R[size_t(i * r + j)];
  gemm_nn_acc(K, K, r, R.data(), r, Rt.data(), K, H.data(), K, 1.0f, threads);
  for (int64_t i = 0; i < K; ++i) H[size_t(i * K + i)] += float(r);
  std::vector<float> L;
  for (auto _ : state) {
    L = H;
    if (!cholesky_lower_blocked(L.data(), K, threads)) state.SkipWithError("not positive definite");
    invert_lower_blocked(L.data(), K, threads);
    benchmark::DoNotOptimize(L.data());
  }
  state.counters["GFMA/CPUs"] =
      benchmark::Counter(double(K) * double(K) * double(K) / 3 * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(cholesky_inverse)->ArgNames({"K", "threads"})->Args({2560, 1})->Args({2560, 2})->Args({9728, 2})->Unit(benchmark::kMillisecond)->MeasureProcessCPUTime()->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
