// Linear layers (F32/BF16/NVFP4 weights, [out, in] row-major) and their matrix-product kernels.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/cpu.h"
#include "format/dtype.h"
#include "model/thread_pool.h"

namespace fp4z {

enum class WeightKind : uint8_t { kF32, kBF16, kNvfp4 };

// One Linear weight W [n, k]: y = W·x. Pointers go into the checkpoint mapping (zero copy).
struct Linear {
  std::string name;
  WeightKind kind = WeightKind::kF32;
  int64_t n = 0, k = 0;
  const uint8_t* data = nullptr;    // F32/BF16 values, or packed E2M1 codes [n, k/2] (even col = low nibble)
  const uint8_t* scales = nullptr;  // NVFP4: E4M3 block scales [n, k/16]
  // NVFP4 global scale: outputs are multiplied by `global_mul` (ModelOpt weight_scale_2) or divided
  // by `global_div` (compressed-tensors weight_global_scale); exactly one is != 1.
  float global_mul = 1.0f, global_div = 1.0f;
  // Activation global scale (divisor) for --act-quant, 0 when the checkpoint has none.
  float input_global_scale = 0.0f;
  uint64_t stored_bytes() const;
};

// Per-call options of the kernels.
struct KernelOptions {
  Isa isa = Isa::kScalar;
  bool act_quant = false;  // W4A4 emulation on NVFP4 linears with an input_global_scale
  // Prompt speed mode: round activations to BF16 and use AVX-512 BF16 dot products (vdpbf16ps) for
  // NVFP4/BF16 weights when T >= 2. Not the f32 reference; off by default.
  bool bf16_act = false;
};

// Y[t, :] = W · X[t, :] for t < T. X is [T, k] (row stride k), Y is [T, n] (row stride n).
// Results of the different ISAs agree within float rounding (summation order differs).
void linear_forward(const Linear& w, const float* x, int64_t T, float* y, ThreadPool& pool, const KernelOptions& opt);

// The best ISA the NVFP4/BF16 kernels can use here (AVX-512 also needs VNNI/BF16-capable CPUs;
// FP4Z_ISA caps it).
Isa kernel_isa();

// Fake-quantizes activations in place like compressed-tensors' dynamic local NVFP4 (inference.md
// §1.2): BF16 rounding, then per 16 features FP8 scale with global scale `gs`, E2M1 RNE, dequantized.
void fake_quantize_activations(float* x, int64_t T, int64_t k, float gs);

// ---- kernels per ISA (internal; exposed for tests) ----
// Each computes Y[t, r] for rows r in [r0, r1) and all T tokens WITHOUT the NVFP4 global scale.
// `scratch` holds at least kernel_scratch_floats(k) floats.
size_t kernel_scratch_floats(int64_t k);
namespace kernels {
void rows_scalar(const Linear& w, const float* x, int64_t T, int64_t r0, int64_t r1, float* y, float* scratch);
void rows_avx2(const Linear& w, const float* x, int64_t T, int64_t r0, int64_t r1, float* y, float* scratch);
void rows_avx512(const Linear& w, const float* x, int64_t T, int64_t r0, int64_t r1, float* y, float* scratch);
// BF16-activation prompt kernel: xb is X rounded to BF16 [T, k]; needs AVX512_BF16 (T >= 2).
void rows_avx512_bf16(const Linear& w, const uint16_t* xb, int64_t T, int64_t r0, int64_t r1, float* y, float* scratch);
bool cpu_has_avx512_bf16();
// Attention helpers: dot product and y += a·x over n floats.
float dot_scalar(const float* a, const float* b, int64_t n);
float dot_avx2(const float* a, const float* b, int64_t n);
float dot_avx512(const float* a, const float* b, int64_t n);
void axpy_scalar(float a, const float* x, float* y, int64_t n);
void axpy_avx2(float a, const float* x, float* y, int64_t n);
void axpy_avx512(float a, const float* x, float* y, int64_t n);
// Row blocking shared by the kernels: rows dequantized at once, K chunk length.
constexpr int64_t kPanelRows = 32;
constexpr int64_t kPanelK = 1024;
}  // namespace kernels

}  // namespace fp4z
