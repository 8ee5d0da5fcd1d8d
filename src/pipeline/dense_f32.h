// Dense f32 linear algebra for rd calibration at full size: C ± A·B (cache-blocked, threaded, AVX-512
// dispatched), and the blocked factor U = chol((H + δ)⁻¹)ᵀ that GPTQ-style error feedback needs.
#pragma once
#include <cstdint>

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

namespace kernels {
// Single-threaded; packs its operands into thread-local buffers.
void gemm_nn_acc_avx512(int64_t M, int64_t N, int64_t Kd, const float* A, int64_t lda, const float* B, int64_t ldb,
                        float* C, int64_t ldc, float sign);
}

// In-place lower Cholesky factor of the K×K row-major f32 matrix A (upper triangle is zeroed).
// Diagonal blocks (kCholBlock) are factored in double; panels and trailing updates in f32 through
// gemm_nn_acc. False if A is not positive definite.
bool cholesky_lower_blocked(float* A, int64_t K, int threads);

// In place: the lower-triangular L becomes L⁻¹ (blocked; diagonal blocks inverted in double).
void invert_lower_blocked(float* L, int64_t K, int threads);

constexpr int64_t kCholBlock = 128;

}  // namespace fp4z
