// Dense f32 linear algebra for rd calibration at full size: C ± A·B (cache-blocked, threaded, AVX-512
// dispatched), and the blocked factor U = chol((H + δ)⁻¹)ᵀ that GPTQ-style error feedback needs.
#pragma once
#include <cstdint>

#include "common/cpu.h"

namespace fp4z {

// C[M,N] += sign · A[M,Kd] · B[Kd,N], all row-major with leading dimensions lda/ldb/ldc; sign is +1 or
// −1. C is split over `threads` along its longer side (one rectangle per thread). The summation order over
// Kd is fixed (chunks of 256, in order, each chunk summed from zero and then added to C), so the result
// does not depend on the thread count, nor on how a caller splits C into several calls.
void gemm_nn_acc(int64_t M, int64_t N, int64_t Kd, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                 int64_t ldc, float sign, int threads);

// Scalar reference of gemm_nn_acc (tests compare the dispatched kernel with it).
void gemm_nn_acc_scalar(int64_t M, int64_t N, int64_t Kd, const float* A, int64_t lda, const float* B, int64_t ldb,
                        float* C, int64_t ldc, float sign);

constexpr int64_t kCholBlock = 128;
constexpr int64_t kCholPanelRows = 32;

// One step of the blocked Cholesky's panel: each of the R <= kCholPanelRows rows (b floats at rows + r·ld)
// becomes row·L⁻ᵀ for the b×b lower factor d (double, row-major), by forward substitution in double;
// x is scratch of b·kCholPanelRows doubles. Both paths give the same bits (no fused multiply-add).
void cholesky_panel_rows_scalar(float* rows, int64_t ld, int64_t R, const double* d, int64_t b, double* x);

namespace kernels {
// Single-threaded; packs its operands into thread-local buffers.
void gemm_nn_acc_avx512(int64_t M, int64_t N, int64_t Kd, const float* A, int64_t lda, const float* B, int64_t ldb,
                        float* C, int64_t ldc, float sign);
void cholesky_panel_rows_avx512(float* rows, int64_t ld, int64_t R, const double* d, int64_t b, double* x);
}  // namespace kernels

// The single-threaded product tile and the Cholesky panel step of one ISA level (one table per level,
// as nv_kernels; AVX2 CPUs run the scalar ones).
struct DenseF32Kernels {
  void (*gemm_nn_acc)(int64_t M, int64_t N, int64_t Kd, const float* A, int64_t lda, const float* B, int64_t ldb, float* C,
                      int64_t ldc, float sign);
  void (*cholesky_panel_rows)(float* rows, int64_t ld, int64_t R, const double* d, int64_t b, double* x);
};
// The kernels of `isa`, capped by what this CPU runs.
const DenseF32Kernels& dense_f32_kernels(Isa isa);

// In-place lower Cholesky factor of the K×K row-major f32 matrix A (upper triangle is zeroed).
// Diagonal blocks (kCholBlock) are factored in double; panels and trailing updates in f32 through
// gemm_nn_acc. False if A is not positive definite.
bool cholesky_lower_blocked(float* A, int64_t K, int threads);

// In place: the lower-triangular L becomes L⁻¹ (blocked; diagonal blocks inverted in double).
void invert_lower_blocked(float* L, int64_t K, int threads);

}  // namespace fp4z
