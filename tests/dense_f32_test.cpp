// Dense f32 kernels of rd calibration: the dispatched C ± A·B against the scalar path and a double
// reference, and the blocked Cholesky / triangular inverse against their defining identities.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/cpu.h"
#include "pipeline/dense_f32.h"

using namespace fp4z;

namespace {

std::vector<float> random_matrix(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> m(size_t(rows * cols));
  for (auto& x : m) x = nd(rng);
  return m;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST(DenseF32, GemmPathsAgreeWithDoubleReferenceOnOddShapes) {
  // Shapes with remainders against the 12×32 tile and the 256-deep k chunks; strided (sub-matrix) operands.
  for (auto [M, N, Kd] : std::vector<std::array<int64_t, 3>>{{1, 1, 1}, {7, 33, 5}, {13, 300, 270}, {50, 17, 600}}) {
    const int64_t lda = Kd + 3, ldb = N + 5, ldc = N + 2;
    auto A = random_matrix(M, lda, 1), B = random_matrix(Kd, ldb, 2), C0 = random_matrix(M, ldc, 3);
    for (float sign : {1.0f, -1.0f}) {
      std::vector<float> Cd = C0, Cs = C0;
      gemm_nn_acc(M, N, Kd, A.data(), lda, B.data(), ldb, Cd.data(), ldc, sign, 2);
      gemm_nn_acc_scalar(M, N, Kd, A.data(), lda, B.data(), ldb, Cs.data(), ldc, sign);
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < ldc; ++j) {
          double ref = C0[size_t(i * ldc + j)];
          if (j < N)
            for (int64_t k = 0; k < Kd; ++k) ref += double(sign) * double(A[size_t(i * lda + k)]) * double(B[size_t(k * ldb + j)]);
          const double tol = 1e-5 * (std::sqrt(double(Kd)) + 1) * 4;
          ASSERT_NEAR(Cd[size_t(i * ldc + j)], ref, tol) << M << "x" << N << "x" << Kd << " at " << i << "," << j;
          ASSERT_NEAR(Cs[size_t(i * ldc + j)], ref, tol) << M << "x" << N << "x" << Kd << " at " << i << "," << j;
        }
    }
  }
}

TEST(DenseF32, Avx512KernelFollowsTheDocumentedSummationOrderExactly) {
  if (detect_isa() != Isa::kAvx512) GTEST_SKIP() << "no AVX-512 on this CPU";
  // The order dense_f32.h documents, written out element by element: per chunk of 256 k, a fused
  // multiply-add chain from zero, then C + sign·chunk. The packed kernel must produce exactly these bits for
  // every edge case of its blocking: rows past the 12-row tile and the 192-row A block, columns past the
  // 16/32-wide tile and the 1536-column B block, k past the 256 chunk; strided operands, both signs.
  const std::vector<std::array<int64_t, 3>> shapes = {
      {1, 1, 1}, {12, 32, 256}, {13, 17, 257}, {25, 15, 255}, {5, 47, 600}, {200, 33, 40}, {3, 1600, 20}, {11, 100, 513}};
  for (auto [M, N, Kd] : shapes) {
    const int64_t lda = Kd + 5, ldb = N + 3, ldc = N + 7;
    const auto A = random_matrix(M, lda, 11), B = random_matrix(Kd, ldb, 12), C0 = random_matrix(M, ldc, 13);
    for (float sign : {1.0f, -1.0f}) {
      std::vector<float> want = C0, got = C0;
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j)
          for (int64_t k0 = 0; k0 < Kd; k0 += 256) {
            float acc = 0.0f;
            for (int64_t k = k0; k < std::min(Kd, k0 + 256); ++k)
              acc = std::fma(A[size_t(i * lda + k)], B[size_t(k * ldb + j)], acc);
            want[size_t(i * ldc + j)] += sign * acc;
          }
      kernels::gemm_nn_acc_avx512(M, N, Kd, A.data(), lda, B.data(), ldb, got.data(), ldc, sign);
      ASSERT_TRUE(same_bits(got, want)) << M << "x" << N << "x" << Kd << " sign " << sign;
    }
  }
}

TEST(DenseF32, ResultDoesNotDependOnThreadsOrOnHowCallersSplitC) {
  // Tall (split by rows) and wide (split by columns) products, large enough to be run in parallel.
  for (auto [M, N, Kd] : std::vector<std::array<int64_t, 3>>{{301, 190, 300}, {70, 1000, 290}}) {
    const auto A = random_matrix(M, Kd, 21), B = random_matrix(Kd, N, 22), C0 = random_matrix(M, N, 23);
    std::vector<float> one = C0;
    gemm_nn_acc(M, N, Kd, A.data(), Kd, B.data(), N, one.data(), N, -1.0f, 1);
    for (int threads : {2, 3, 5}) {
      std::vector<float> many = C0;
      gemm_nn_acc(M, N, Kd, A.data(), Kd, B.data(), N, many.data(), N, -1.0f, threads);
      ASSERT_TRUE(same_bits(many, one)) << M << "x" << N << "x" << Kd << " threads " << threads;
    }
    // Two calls on a split that is not tile-aligned (rows 0..m, m..M; then columns 0..n, n..N).
    const int64_t m = M / 2 + 1, n = N / 2 + 3;
    std::vector<float> rows = C0, cols = C0;
    gemm_nn_acc(m, N, Kd, A.data(), Kd, B.data(), N, rows.data(), N, -1.0f, 1);
    gemm_nn_acc(M - m, N, Kd, A.data() + m * Kd, Kd, B.data(), N, rows.data() + m * N, N, -1.0f, 1);
    gemm_nn_acc(M, n, Kd, A.data(), Kd, B.data(), N, cols.data(), N, -1.0f, 2);
    gemm_nn_acc(M, N - n, Kd, A.data(), Kd, B.data() + n, N, cols.data() + n, N, -1.0f, 2);
    EXPECT_TRUE(same_bits(rows, one));
    EXPECT_TRUE(same_bits(cols, one));
  }
}

TEST(DenseF32, CholeskyPanelPathsGiveTheSameBits) {
  if (detect_isa() != Isa::kAvx512) GTEST_SKIP() << "no AVX-512 on this CPU";
  for (auto [R, b] : std::vector<std::array<int64_t, 2>>{{32, 128}, {7, 45}, {1, 1}}) {
    const int64_t ld = b + 9;
    // A well-conditioned lower factor: unit-ish diagonal, small random entries below it.
    const auto noise = random_matrix(b, b, 31);
    std::vector<double> d(size_t(b * b), 0.0);
    for (int64_t i = 0; i < b; ++i)
      for (int64_t j = 0; j <= i; ++j) d[size_t(i * b + j)] = i == j ? 1.0 + std::fabs(noise[size_t(i * b + j)]) : 0.1 * noise[size_t(i * b + j)];
    const auto rows0 = random_matrix(R, ld, 32);
    std::vector<float> scalar = rows0, avx512 = rows0;
    std::vector<double> x(size_t(b * kCholPanelRows));
    cholesky_panel_rows_scalar(scalar.data(), ld, R, d.data(), b, x.data());
    kernels::cholesky_panel_rows_avx512(avx512.data(), ld, R, d.data(), b, x.data());
    EXPECT_TRUE(same_bits(scalar, avx512)) << R << " rows, b " << b;
    // And the solve is one: row = x·Lᵀ for the result x.
    for (int64_t r = 0; r < R; ++r)
      for (int64_t j = 0; j < b; ++j) {
        double s = 0;
        for (int64_t k = 0; k <= j; ++k) s += double(scalar[size_t(r * ld + k)]) * d[size_t(j * b + k)];
        ASSERT_NEAR(s, rows0[size_t(r * ld + j)], 1e-5 * (1 + std::fabs(rows0[size_t(r * ld + j)])));
      }
  }
}

TEST(DenseF32, BlockedCholeskyAndInverseSatisfyTheirIdentities) {
  const int64_t K = 300, T = 400;  // three Cholesky blocks, the last one partial
  auto X = random_matrix(T, K, 9);
  std::vector<double> H(size_t(K * K), 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < K; ++i)
      for (int64_t j = 0; j < K; ++j) H[size_t(i * K + j)] += double(X[size_t(t * K + i)]) * X[size_t(t * K + j)] / double(T);
  for (int64_t i = 0; i < K; ++i) H[size_t(i * K + i)] += 0.1;
  std::vector<float> L(H.begin(), H.end());
  ASSERT_TRUE(cholesky_lower_blocked(L.data(), K, 2));
  double max_err = 0;
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) {
      if (j > i) {
        ASSERT_EQ(L[size_t(i * K + j)], 0.0f);
      }
      double s = 0;
      for (int64_t k = 0; k <= std::min(i, j); ++k) s += double(L[size_t(i * K + k)]) * L[size_t(j * K + k)];
      max_err = std::max(max_err, std::fabs(s - H[size_t(i * K + j)]));
    }
  EXPECT_LT(max_err, 1e-4);  // L·Lᵀ = H (entries of H are O(1))
  std::vector<float> Li = L;
  invert_lower_blocked(Li.data(), K, 2);
  max_err = 0;
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) {
      if (j > i) {
        ASSERT_EQ(Li[size_t(i * K + j)], 0.0f);
      }
      double s = 0;
      for (int64_t k = j; k <= i; ++k) s += double(L[size_t(i * K + k)]) * Li[size_t(k * K + j)];
      max_err = std::max(max_err, std::fabs(s - (i == j ? 1.0 : 0.0)));
    }
  EXPECT_LT(max_err, 1e-4);  // L·L⁻¹ = I
  // One thread gives the same bits as two.
  std::vector<float> L1(H.begin(), H.end());
  ASSERT_TRUE(cholesky_lower_blocked(L1.data(), K, 1));
  EXPECT_TRUE(same_bits(L1, L));
  invert_lower_blocked(L1.data(), K, 1);
  EXPECT_TRUE(same_bits(L1, Li));
  // Not positive definite: refused.
  std::vector<float> bad(size_t(4 * 4), 0.0f);
  bad[0] = 1;
  bad[5] = -1;
  EXPECT_FALSE(cholesky_lower_blocked(bad.data(), 4, 1));
}
