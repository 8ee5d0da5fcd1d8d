// Dense f32 kernels for rd calibration: blocked C ± A·B with ISA dispatch, blocked Cholesky and
// triangular inverse (diagonal blocks in double, the O(K³) bulk in f32 matrix products).
#include "pipeline/dense_f32.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/cpu.h"
#include "common/parallel.h"

namespace fp4z {

namespace {

// Threads split C into one rectangle each, along its longer side, so that each thread packs only its own
// share of the larger operand once per block (a split along M makes every thread pack all of B, and vice versa).
// Piece edges are multiples of the AVX-512 tile (12 rows, 32 columns) so that only the last piece has edge tiles.
constexpr int64_t kSplitRows = 48, kSplitCols = 64;
constexpr double kMinParallelFma = 1 << 20;  // smaller products run on the calling thread

// Lower Cholesky of the b×b double block (row-major), in place; false if not positive definite.
bool cholesky_small(std::vector<double>& a, int64_t b) {
  for (int64_t j = 0; j < b; ++j) {
    double d = a[size_t(j * b + j)];
    for (int64_t k = 0; k < j; ++k) d -= a[size_t(j * b + k)] * a[size_t(j * b + k)];
    if (!(d > 0) || !std::isfinite(d)) return false;
    d = std::sqrt(d);
    a[size_t(j * b + j)] = d;
    for (int64_t i = j + 1; i < b; ++i) {
      double s = a[size_t(i * b + j)];
      for (int64_t k = 0; k < j; ++k) s -= a[size_t(i * b + k)] * a[size_t(j * b + k)];
      a[size_t(i * b + j)] = s / d;
    }
  }
  return true;
}

// Inverse of the lower-triangular b×b double block l (row-major), into x.
void invert_lower_small(const std::vector<double>& l, int64_t b, std::vector<double>& x) {
  x.assign(size_t(b * b), 0.0);
  for (int64_t c = 0; c < b; ++c) {
    x[size_t(c * b + c)] = 1.0 / l[size_t(c * b + c)];
    for (int64_t i = c + 1; i < b; ++i) {
      double s = 0;
      for (int64_t k = c; k < i; ++k) s += l[size_t(i * b + k)] * x[size_t(k * b + c)];
      x[size_t(i * b + c)] = -s / l[size_t(i * b + i)];
    }
  }
}

}  // namespace

void gemm_nn_acc_scalar(int64_t M, int64_t N, int64_t Kd, const float* A, int64_t lda, const float* B, int64_t ldb,
                        float* C, int64_t ldc, float sign) {
  std::vector<float> acc(static_cast<size_t>(std::max<int64_t>(N, 1)));
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t k0 = 0; k0 < Kd; k0 += 256) {
      std::fill(acc.begin(), acc.end(), 0.0f);
      const int64_t k1 = std::min(Kd, k0 + 256);
      for (int64_t k = k0; k < k1; ++k) {
        const float a = A[i * lda + k];
        const float* brow = B + k * ldb;
        for (int64_t j = 0; j < N; ++j) acc[size_t(j)] += a * brow[j];
      }
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] += sign * acc[size_t(j)];
    }
  }
}

const DenseF32Kernels& dense_f32_kernels(Isa isa) {
  static const DenseF32Kernels scalar{gemm_nn_acc_scalar, cholesky_panel_rows_scalar},
      avx512{kernels::gemm_nn_acc_avx512, kernels::cholesky_panel_rows_avx512};
  const Isa best = detect_isa();
  if (int(isa) > int(best)) isa = best;
  return isa == Isa::kAvx512 ? avx512 : scalar;
}

void gemm_nn_acc(int64_t M, int64_t N, int64_t Kd, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                 int64_t ldc, float sign, int threads) {
  if (M <= 0 || N <= 0 || Kd <= 0) return;
  const auto tile = dense_f32_kernels(detect_isa()).gemm_nn_acc;
  auto run = [&](int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
    tile(i1 - i0, j1 - j0, Kd, A + i0 * lda, lda, B + j0, ldb, C + i0 * ldc + j0, ldc, sign);
  };
  const bool by_cols = N >= M;
  const int64_t unit = by_cols ? kSplitCols : kSplitRows, len = by_cols ? N : M;
  const int64_t units = (len + unit - 1) / unit;
  const int64_t pieces = std::min<int64_t>(std::max(threads, 1), units);
  if (pieces <= 1 || double(M) * double(N) * double(Kd) < kMinParallelFma) {
    run(0, M, 0, N);
    return;
  }
  parallel_for(size_t(pieces), int(pieces), 1, [&](size_t pb, size_t pe) {
    for (size_t p = pb; p < pe; ++p) {
      const int64_t b = std::min(len, int64_t(p) * units / pieces * unit), e = std::min(len, int64_t(p + 1) * units / pieces * unit);
      if (b >= e) continue;
      if (by_cols)
        run(0, M, b, e);
      else
        run(b, e, 0, N);
    }
  });
}

void cholesky_panel_rows_scalar(float* rows, int64_t ld, int64_t R, const double* d, int64_t b, double* x) {
  // The rows innermost: each row's operations and their order are those of a row-by-row solve, but the loop
  // vectorises across rows instead of waiting on one row's chain of dependent subtractions.
  constexpr int64_t P = kCholPanelRows;
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = 0; j < b; ++j) x[j * P + r] = rows[r * ld + j];
  for (int64_t j = 0; j < b; ++j) {
    double* xj = x + j * P;
    for (int64_t k = 0; k < j; ++k) {
      const double djk = d[j * b + k];
      const double* xk = x + k * P;
      for (int64_t r = 0; r < R; ++r) xj[r] -= xk[r] * djk;
    }
    const double djj = d[j * b + j];
    for (int64_t r = 0; r < R; ++r) xj[r] /= djj;
  }
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j = 0; j < b; ++j) rows[r * ld + j] = float(x[j * P + r]);
}

bool cholesky_lower_blocked(float* A, int64_t K, int threads) {
  const int64_t nb = kCholBlock;
  std::vector<double> d;
  std::vector<float> panel_t;  // the current panel transposed: [b][K] (columns of L21 as rows)
  for (int64_t k0 = 0; k0 < K; k0 += nb) {
    const int64_t b = std::min(nb, K - k0), k1 = k0 + b;
    // Diagonal block (all earlier panels' updates are already applied): factor in double.
    d.assign(size_t(b * b), 0.0);
    for (int64_t i = 0; i < b; ++i)
      for (int64_t j = 0; j <= i; ++j) d[size_t(i * b + j)] = A[(k0 + i) * K + k0 + j];
    if (!cholesky_small(d, b)) return false;
    for (int64_t i = 0; i < b; ++i)
      for (int64_t j = 0; j < b; ++j) A[(k0 + i) * K + k0 + j] = j <= i ? float(d[size_t(i * b + j)]) : 0.0f;
    if (k1 >= K) break;
    // Panel: L21 = A21 · L11⁻ᵀ (forward substitution in double), kCholPanelRows rows per kernel call.
    const auto panel_rows = dense_f32_kernels(detect_isa()).cholesky_panel_rows;
    parallel_for(size_t(K - k1), threads, 64, [&](size_t rb, size_t re) {
      std::vector<double> x(static_cast<size_t>(b * kCholPanelRows));
      for (size_t r0 = rb; r0 < re; r0 += kCholPanelRows) {
        const int64_t R = std::min<int64_t>(kCholPanelRows, int64_t(re - r0));
        float* rows = A + (k1 + int64_t(r0)) * K + k0;
        panel_rows(rows, K, R, d.data(), b, x.data());
      }
    });
    panel_t.assign(size_t(b * K), 0.0f);
    for (int64_t r = k1; r < K; ++r)
      for (int64_t j = 0; j < b; ++j) panel_t[size_t(j * K + r)] = A[r * K + k0 + j];
    // Trailing update of the lower part: A[r, k1:r_end] -= L21[r] · L21[k1:r_end]ᵀ, one row block at a time.
    const int64_t blocks = (K - k1 + nb - 1) / nb;
    parallel_for(size_t(blocks), threads, 1, [&](size_t bb, size_t be) {
      for (size_t blk = bb; blk < be; ++blk) {
        const int64_t r0 = k1 + int64_t(blk) * nb, r1 = std::min(K, r0 + nb);
        gemm_nn_acc(r1 - r0, r1 - k1, b, A + r0 * K + k0, K, panel_t.data() + k1, K, A + r0 * K + k1, K, -1.0f, 1);
      }
    });
  }
  for (int64_t i = 0; i < K; ++i) std::fill(A + i * K + i + 1, A + (i + 1) * K, 0.0f);
  return true;
}

void invert_lower_blocked(float* L, int64_t K, int threads) {
  const int64_t nb = kCholBlock;
  std::vector<double> l, x;
  std::vector<float> inv_f, t;
  t.reserve(size_t(nb * K));  // grows every block otherwise (a fresh allocation and its page faults each time)
  // Row block i, top to bottom (the blocks above already hold X = L⁻¹):
  // X[i, :i] = −L_ii⁻¹ · (L[i, :i] · X[:i, :i]), X_ii = L_ii⁻¹.
  for (int64_t i0 = 0; i0 < K; i0 += nb) {
    const int64_t b = std::min(nb, K - i0);
    l.assign(size_t(b * b), 0.0);
    for (int64_t r = 0; r < b; ++r)
      for (int64_t c = 0; c <= r; ++c) l[size_t(r * b + c)] = L[(i0 + r) * K + i0 + c];
    invert_lower_small(l, b, x);
    inv_f.assign(x.begin(), x.end());
    if (i0 > 0) {
      t.assign(size_t(b * i0), 0.0f);
      // T[:, cblock] = Σ_{k >= c0} L[i, k] X[k, cblock] (X is lower triangular: skip its zero part).
      const int64_t cblocks = (i0 + nb - 1) / nb;
      parallel_for(size_t(cblocks), threads, 1, [&](size_t cb, size_t ce) {
        for (size_t c = cb; c < ce; ++c) {
          const int64_t c0 = int64_t(c) * nb, c1 = std::min(i0, c0 + nb);
          gemm_nn_acc(b, c1 - c0, i0 - c0, L + i0 * K + c0, K, L + c0 * K + c0, K, t.data() + c0, i0, 1.0f, 1);
        }
      });
      for (int64_t r = 0; r < b; ++r) std::fill(L + (i0 + r) * K, L + (i0 + r) * K + i0, 0.0f);
      gemm_nn_acc(b, i0, b, inv_f.data(), b, t.data(), i0, L + i0 * K, K, -1.0f, threads);
    }
    for (int64_t r = 0; r < b; ++r)
      for (int64_t c = 0; c < b; ++c) L[(i0 + r) * K + i0 + c] = float(x[size_t(r * b + c)]);
  }
}

}  // namespace fp4z
