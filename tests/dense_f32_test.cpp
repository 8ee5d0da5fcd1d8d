// Dense f32 kernels of rd calibration: the dispatched C ± A·B against the scalar path and a double
// reference, and the blocked Cholesky / triangular inverse against their defining identities.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

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

}  // namespace

TEST(DenseF32, GemmPathsAgreeWithDoubleReferenceOnOddShapes) {
  // Shapes with remainders against the 6×32 tile and the 256 k/n blocks; strided (sub-matrix) operands.
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
      if (j > i) ASSERT_EQ(L[size_t(i * K + j)], 0.0f);
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
      if (j > i) ASSERT_EQ(Li[size_t(i * K + j)], 0.0f);
      double s = 0;
      for (int64_t k = j; k <= i; ++k) s += double(L[size_t(i * K + k)]) * Li[size_t(k * K + j)];
      max_err = std::max(max_err, std::fabs(s - (i == j ? 1.0 : 0.0)));
    }
  EXPECT_LT(max_err, 1e-4);  // L·L⁻¹ = I
  // Not positive definite: refused.
  std::vector<float> bad(size_t(4 * 4), 0.0f);
  bad[0] = 1;
  bad[5] = -1;
  EXPECT_FALSE(cholesky_lower_blocked(bad.data(), 4, 1));
}
