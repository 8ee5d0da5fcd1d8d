// One Linear layer under --method rd: damped inverse-Hessian Cholesky factor, GPTQ-style error
// feedback with rate–distortion block/code decisions, input correction, code refinement, and the fixed
// number of cost-table passes.
#pragma once
#include <cstdint>
#include <vector>

#include "common/byte_buffer.h"
#include "nvfp4/rd.h"

namespace fp4z {

// Passes of quantize → histogram → re-quantize per tensor. The estimate does not converge (the
// rate keeps falling a little each pass), so the count is fixed: pass 0 is the plain λ = 0,
// no-feedback quantization that seeds the tables, then kRdRatePasses passes with λ.
constexpr int kRdRatePasses = 3;

// Upper Cholesky factor U of (H + δ·mean(diag H)·I)⁻¹ (Uᵀ U = H⁻¹), row-major K×K f32, as GPTQ
// uses it. Columns with H_jj = 0 get H_jj = 1. δ grows ×10 (up to 3 times) if H is not positive
// definite. Returns the δ used. (rd_prepare_hessian on an f32 copy of H; kept for the oracle tests.)
double rd_inverse_cholesky_upper(const std::vector<double>& H, int64_t K, double damp, std::vector<float>& U);

// What the calibrated decisions of one input need, prepared once and shared by every module that
// reads that input (q/k/v, gate/up): the damped H_d, the diagonal the damping added, and U.
// f32 throughout: H is a mean over ≥ 10³ tokens whose own sampling noise (≈ 1/√tokens) is far above
// f32's 6e-8; the O(K³) factor keeps its diagonal blocks in double (dense_f32.h), and the quantities
// built from it (the input correction, the refinement's gradient) are small corrections to W and to
// Δw whose f32 rounding is below the codes' decision margins (tests compare with numpy in double).
struct RdHessian {
  int64_t K = 0;
  std::vector<float> Hd;     // H + diag(added), symmetric
  std::vector<float> added;  // Hd_jj − H_jj per column
  std::vector<float> U;      // upper triangular, Uᵀ U = Hd⁻¹, found without forming Hd⁻¹: with P the
                             // index reversal, chol(P·Hd·P) = L gives U = P·L⁻¹·P
  double damp = 0;           // δ actually used
  void release() { Hd = {}, added = {}, U = {}; }
};

// From H (K×K mean x xᵀ, symmetric f32, taken over: it becomes Hd). Peak memory: 2 K² floats.
// Throws Error(exit 2) if H is not positive definite even with δ × 1000.
RdHessian rd_prepare_hessian(std::vector<float>&& H, int64_t K, double damp, int threads);

// GPTQ's per-column distortion weights 1/U_jj² of the factor rd_prepare_hessian would give (K values),
// from the Cholesky factor alone (U_jj is the reciprocal of its diagonal): half the factor's work and
// one K² buffer. Used where only the weights are needed (the proxy search runs at full size).
std::vector<float> rd_column_weights(std::vector<float>&& H, int64_t K, double damp, int threads);

// One quantization pass over W [N, K] (K % 16 == 0): per 16-block rd_choose_block, per element
// rd_choose_code. With U (K×K from rd_prepare_hessian) each element's distortion weight is 1/U_jj²,
// the block scale is chosen from the already-updated weights when the block starts, and each
// column's error (w − q)/U_jj is fed into the later columns of its row through U's row j (GPTQ order).
// Lazy batches: inside a block of kRdFeedbackBlock columns the feedback is applied column by column
// (the exact sequential form); the block's errors reach the columns after it as one product
// E·U[block, rest] (the same sums in another f32 order; for K <= the block exactly the sequential
// form). Without U: weight 1, no feedback. Writes packed codes [N, K/2] and scale bytes [N, K/16].
// Rows are independent; the result does not depend on threads.
void rd_quantize_pass(const float* W, int64_t N, int64_t K, const float* U, const RdBlockParams& p, uint8_t* packed,
                      uint8_t* scales, int threads);
constexpr int64_t kRdFeedbackBlock = 128;

// The weight whose GPTQ quantization on the quantized model's inputs x̃ best reproduces the source
// layer on the source model's inputs x: argmin_Q E‖W x − Q x̃‖² = W C H̃⁻¹ with C = E[x x̃ᵀ] and
// H̃ = E[x̃ x̃ᵀ] (both K×K, row-major), computed as W + W (C − H̃)(H̃ + δ)⁻¹ with δ the feedback pass's
// damping, so that it is exactly W where x = x̃ (the first layer) and damping does not shrink W.
// Returns W unchanged if H̃ + δ is not positive definite. (Double-input form for the oracle tests.)
std::vector<float> rd_input_corrected_weight(const std::vector<float>& W, int64_t N, int64_t K, const std::vector<double>& C,
                                             const std::vector<double>& H, double damp, int threads);
// The same in place on W [N, K] with D = C − H̃ (K×K f32) and the prepared factor: W += W·D·UᵀU,
// as matrix products in the cheaper order (W·D first when N <= K, else D·UᵀU first).
void rd_correct_weight(float* W, int64_t N, int64_t K, const float* D, const RdHessian& h, int threads);

// Coordinate descent on the codes of W's rows after the feedback pass, scales fixed: each sweep visits
// every element and takes the code that lowers Δwᵀ H_d Δw + λ·cost the most, keeping g = H_d Δw
// current (g starts as one product ΔW·H_d; a changed code costs one O(K) update). Stops early when a
// sweep changes nothing. With `row_h` (N values): each row's Δwᵀ H Δw (undamped) at the end.
void rd_refine_codes(const float* W, int64_t N, int64_t K, const RdHessian& h, const RdBlockParams& p, uint8_t* packed,
                     const uint8_t* scales, int sweeps, int threads, double* row_h = nullptr);
// Double-H form (prepares the factor itself; for the oracle tests).
void rd_refine_codes(const float* W, int64_t N, int64_t K, const std::vector<double>& H, double damp, const RdBlockParams& p,
                     uint8_t* packed, const uint8_t* scales, int sweeps, int threads);

struct RdLayerResult {
  ByteBuffer packed, scales;  // every byte written by the layer's pass
  Nvfp4Histogram hist;
  RdCostTables costs{};     // the tables of the final pass
  double mse = 0;           // mean (deq − w)² over the weights
  double h_error = -1;      // Σ_rows Δwᵀ H Δw (mean output error per token), −1 without H
  double seconds = 0;
};

// The whole layer. With `tables` (model-wide tables, see RdJob): one pass with them. Without:
// the tensor's own tables, pass 0 then kRdRatePasses passes with λ (each with the tables of the
// previous pass's histogram). H (K×K, mean x xᵀ) may be null; with H, `refine_sweeps` sweeps of
// rd_refine_codes follow the last pass.
RdLayerResult rd_quantize_layer(const float* W, int64_t N, int64_t K, const std::vector<double>* H, float gs, double lambda,
                                double damp, int threads, const RdCostTables* tables = nullptr, int refine_sweeps = 0);
// The same with a prepared H (shared by the modules of one input); null = no calibration, and then
// `col_weight` (K values, may be null = 1) weights each column's squared error (no feedback).
RdLayerResult rd_quantize_layer(const float* W, int64_t N, int64_t K, const RdHessian* h, float gs, double lambda, int threads,
                                const RdCostTables* tables, int refine_sweeps, const float* col_weight);

// Dequantized value of code `c` in block scale byte `s8` with global scale gs (loaders' formula).
float rd_dequant(uint8_t code, uint8_t s8, float gs);

}  // namespace fp4z
