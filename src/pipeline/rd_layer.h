// One Linear layer under --method rd: damped inverse-Hessian Cholesky factor, GPTQ-style error
// feedback with rate–distortion block/code decisions, and the fixed number of cost-table passes.
#pragma once
#include <cstdint>
#include <vector>

#include "nvfp4/rd.h"

namespace fp4z {

// Passes of quantize → histogram → re-quantize per tensor. The estimate does not converge (the
// rate keeps falling a little each pass), so the count is fixed: pass 0 is the plain λ = 0,
// no-feedback quantization that seeds the tables, then kRdRatePasses passes with λ.
constexpr int kRdRatePasses = 3;

// Upper Cholesky factor U of (H + δ·mean(diag H)·I)⁻¹ (Uᵀ U = H⁻¹), row-major K×K f32, as GPTQ
// uses it. Columns with H_jj = 0 get H_jj = 1. δ grows ×10 (up to 3 times) if H is not positive
// definite. Returns the δ used.
double rd_inverse_cholesky_upper(const std::vector<double>& H, int64_t K, double damp, std::vector<float>& U);

// One quantization pass over W [N, K] (K % 16 == 0): per 16-block rd_choose_block, per element
// rd_choose_code. With U (K×K from rd_inverse_cholesky_upper) each element's distortion weight is
// 1/U_jj², the block scale is chosen from the already-updated weights when the block starts, and
// each column's error (w − q)/U_jj is fed into the later columns of its row through U's row j
// (GPTQ order, exact sequential form). Without U: weight 1, no feedback. Writes packed codes
// [N, K/2] and scale bytes [N, K/16]. Rows are independent; the result does not depend on threads.
void rd_quantize_pass(const float* W, int64_t N, int64_t K, const float* U, const RdBlockParams& p, uint8_t* packed,
                      uint8_t* scales, int threads);

// The weight whose GPTQ quantization on the quantized model's inputs x̃ best reproduces the source
// layer on the source model's inputs x: argmin_Q E‖W x − Q x̃‖² = W C H̃⁻¹ with C = E[x x̃ᵀ] and
// H̃ = E[x̃ x̃ᵀ] (both K×K, row-major), computed as W + W (C − H̃)(H̃ + δ)⁻¹ with δ the feedback pass's
// damping, so that it is exactly W where x = x̃ (the first layer) and damping does not shrink W.
// Returns W unchanged if H̃ + δ is not positive definite.
std::vector<float> rd_input_corrected_weight(const std::vector<float>& W, int64_t N, int64_t K, const std::vector<double>& C,
                                             const std::vector<double>& H, double damp, int threads);

// Coordinate descent on the codes of W's rows after the feedback pass, scales fixed: each sweep visits
// every element and takes the code that lowers Δwᵀ H_d Δw + λ·cost the most (H_d damped as the
// feedback pass damps it), keeping H_d Δw current. Stops early when a sweep changes nothing.
void rd_refine_codes(const float* W, int64_t N, int64_t K, const std::vector<double>& H, double damp, const RdBlockParams& p,
                     uint8_t* packed, const uint8_t* scales, int sweeps, int threads);

struct RdLayerResult {
  std::vector<uint8_t> packed, scales;
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

// Dequantized value of code `c` in block scale byte `s8` with global scale gs (loaders' formula).
float rd_dequant(uint8_t code, uint8_t s8, float gs);

}  // namespace fp4z
