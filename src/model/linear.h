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
  // Prompt speed mode: quantize activations to int8 per 16 features (f32 scale) and use exact integer
  // dot products with the E2M1 codes (AVX-512 VNNI vpdpbusd; bit-identical scalar emulation on other
  // ISAs) for NVFP4 weights when T >= 2. Not the f32 reference; off by default; wins over bf16_act.
  bool int8_act = false;
};

// Activations quantized for the int8 prompt path: per token and per 16 features q = RNE(x·127/amax)
// in [-127, 127] with f32 scale amax/127. K is padded with zeros to `groups`·256. Within a group of
// 256 features the bytes are permuted to the weight panel order (see linear.cpp): byte
// 64·s + 4·b + perm[j%4] holds feature 16·b + 4·s + j%4 of the group, perm = {0, 2, 1, 3}, so
// int32 lane b of a 64-byte dot product only ever sums block b.
struct Int8Activations {
  int64_t T = 0, k = 0, groups = 0;
  std::vector<int8_t> q;      // [T, groups·256], permuted
  std::vector<float> scale;   // [T, groups·16] amax/127 (0 for an all-zero block)
  std::vector<int32_t> corr;  // [T, groups·16] -12·Σq over the block (weights are stored as 2·E2M1 + 12)
};
// `isa` selects the (bit-identical) SIMD version.
void quantize_activations_int8(const float* x, int64_t T, int64_t k, Int8Activations& out, ThreadPool& pool, Isa isa = Isa::kScalar);

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
// int8-activation prompt kernels (NVFP4 only). Both compute, for every (row, token), per group of 256
// columns and per block lane b: I = corr + Σ (2·E2M1 + 12)·q (exact int32), f_b = fma(float(I),
// (0.5·blockscale)·xscale, f_b), per chunk of kInt8ChunkGroups·256 columns the lane sum in a fixed tree order is
// added to y: the results are bit-identical. The scalar one serves every non-VNNI ISA.
void rows_int8_scalar(const Linear& w, const Int8Activations& xa, int64_t r0, int64_t r1, float* y, float* scratch);
void rows_int8_avx512(const Linear& w, const Int8Activations& xa, int64_t r0, int64_t r1, float* y, float* scratch);
bool cpu_has_avx512_vnni();
// Quantizes token row x[0, k) into Int8Activations row t (q, scale, corr already zeroed): the scalar
// reference and an AVX-512 version with bit-identical output (same f32 operations, RNE rounding).
void quantize_int8_row_scalar(const float* x, int64_t k, Int8Activations& out, int64_t t);
void quantize_int8_row_avx512(const float* x, int64_t k, Int8Activations& out, int64_t t);
// Weight panel of the int8 path: row r, groups [g0, g0+ng) of 256 columns -> ng·256 bytes
// 2·E2M1 + 12 in the permuted order of Int8Activations (0 past K) and ng·16 floats 0.5·blockscale.
void unpack_int8_scalar(const Linear& w, int64_t r, int64_t g0, int64_t ng, uint8_t* wp, float* ws);
// Lane sum in the order of the AVX-512 horizontal sum.
float hsum16_tree(const float* v);
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
// int8 path: groups of 256 columns per weight panel chunk (32 rows × 4096 columns = 128 KiB, in L2).
constexpr int64_t kInt8ChunkGroups = 16;
}  // namespace kernels

}  // namespace fp4z
