// Linear layers (F32/BF16/NVFP4 weights, [out, in] row-major) and their matrix-product kernels.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/aligned_vector.h"
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
  // NVFP4 only: the same codes and scales repacked for the int8 kernels (Int8Weights layout), or
  // null (the int8 path then repacks on the fly, slowly: tests). Owned by the Model.
  const uint8_t* int8 = nullptr;
  uint64_t stored_bytes() const;
};

// Per-call options of the kernels.
struct KernelOptions {
  Isa isa = Isa::kScalar;
  bool act_quant = false;  // W4A4 emulation on NVFP4 linears with an input_global_scale
  // Prompt speed mode: round activations to BF16 and use AVX-512 BF16 dot products (vdpbf16ps) for
  // NVFP4/BF16 weights when T >= 2. Not the f32 reference; off by default.
  bool bf16_act = false;
  // Fast mode (the CLI default; --exact turns it off): NVFP4 linears quantize their activations to
  // int8 per token and per 16 features (f32 scale) and take exact integer dot products with the E2M1
  // codes (AVX-512 VNNI vpdpbusd, AVX2 vpmaddubsw, or scalar: bit-identical results, for one token
  // and for many). Not the f32 reference; wins over bf16_act.
  bool int8_act = false;
};

// NVFP4 weights repacked for the int8 kernels. K is padded with zero codes and zero scales to
// `groups`·256 columns. Per row: groups·128 code bytes, and after all rows' codes, per row groups·16
// scale bytes (the E4M3 bytes, padded with 0). In group g, byte 64u + 4b + j (u < 2, block b < 16,
// j < 4) holds column 256g + 16b + 8u + j in its low nibble and column 256g + 16b + 8u + 4 + j in its
// high nibble: the low nibbles of 64-byte half u are activation vector s = 2u, the high ones s = 2u+1
// (Int8Activations order), so one AND or shift+AND and one vpshufb feed vpdpbusd.
namespace int8_layout {
inline int64_t groups(int64_t k) { return (k + 255) / 256; }
inline size_t bytes(int64_t n, int64_t k) { return size_t(n) * size_t(groups(k)) * (128 + 16); }
inline const uint8_t* scales(const uint8_t* base, int64_t n, int64_t k) { return base + size_t(n) * size_t(groups(k)) * 128; }
}  // namespace int8_layout
// Repacks rows [r0, r1) of NVFP4 weight w into `out` (int8_layout::bytes(w.n, w.k) bytes).
void pack_int8_rows(const Linear& w, int64_t r0, int64_t r1, uint8_t* out);

// Activations quantized for the int8 path: per token and per 16 features q = RNE(x·127/amax) in
// [-127, 127] with f32 scale amax/127. K is padded with zeros to `groups`·256. Within group g, byte
// 64s + 4b + j holds feature 256g + 16b + 4s + j, so int32 lane b of a 64-byte dot product only ever
// sums block b.
struct Int8Activations {
  int64_t T = 0, k = 0, groups = 0;
  const float* source = nullptr;  // what was quantized (reuse check of linear_forward)
  // 64-byte aligned: the kernels' 64-byte loads of a row never split a cache line.
  AlignedVector<int8_t> q;      // [T, groups·256]
  AlignedVector<float> scale;   // [T, groups·16] amax/127 (0 for an all-zero block)
  AlignedVector<int32_t> corr;  // [T, groups·16] -12·Σq over the block (weights are stored as 2·E2M1 + 12)
};
// `isa` selects the (bit-identical) SIMD version.
void quantize_activations_int8(const float* x, int64_t T, int64_t k, Int8Activations& out, ThreadPool& pool, Isa isa = Isa::kScalar);

// Y[t, :] = W · X[t, :] for t < T. X is [T, k] (row stride k), Y is [T, n] (row stride n).
// Results of the different ISAs agree within float rounding (summation order differs).
// `shared_input`: when several linears read the same x (q/k/v, gate/up), pass one Int8Activations
// with `source` reset to null before the first; the int8 path quantizes x once and reuses it.
void linear_forward(const Linear& w, const float* x, int64_t T, float* y, ThreadPool& pool, const KernelOptions& opt,
                    Int8Activations* shared_input = nullptr);

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
void rows_avx512bf16(const Linear& w, const uint16_t* xb, int64_t T, int64_t r0, int64_t r1, float* y, float* scratch);
// Exact AVX-512F dequantization of NVFP4 row r, columns [c0, c0+len) (len % 16 == 0), for the BF16 kernel.
void dequant_nvfp4_avx512(const Linear& w, int64_t r, int64_t c0, int64_t len, float* out);
// int8-activation kernels (NVFP4 weights repacked in int8_layout `packed`), for any T including 1.
// All compute, for every (row, token), per group of 256 columns and per block b:
// I = corr + Σ (2·E2M1 + 12)·q (exact int32), f_b = fma(float(I), ws_b·xs_b, f_b) with
// ws_b = 0.5·blockscale; per chunk of kInt8ChunkGroups groups the lane sum in hsum16_tree's order is
// added to y (which starts at 0): the results are bit-identical across ISAs, T and row tiling.
void rows_int8_scalar(const Linear& w, const uint8_t* packed, const Int8Activations& xa, int64_t r0, int64_t r1, float* y, float* scratch);
void rows_int8_avx2(const Linear& w, const uint8_t* packed, const Int8Activations& xa, int64_t r0, int64_t r1, float* y, float* scratch);
void rows_int8_avx512vnni(const Linear& w, const uint8_t* packed, const Int8Activations& xa, int64_t r0, int64_t r1, float* y, float* scratch);
bool cpu_has_avx512_vnni();
bool cpu_has_avx512_bf16();
// Quantizes token row x[0, k) into Int8Activations row t (q, scale, corr already zeroed): the scalar
// reference and an AVX-512 version with bit-identical output (same f32 operations, RNE rounding).
void quantize_int8_row_scalar(const float* x, int64_t k, Int8Activations& out, int64_t t);
void quantize_int8_row_avx512(const float* x, int64_t k, Int8Activations& out, int64_t t);
// 0.5·E4M3 value of a packed scale byte as every int8 kernel computes it: the byte's low 7 bits
// shifted into an F16 (exact: E4M3 is F16 with 4 exponent and 3 mantissa bits, 2^8 apart) times 128.
// The sign bit is ignored (scales are non-negative) and 0x7F (NaN) reads as 240.
float int8_block_scale(uint8_t s);
// Lane sum in the order of the AVX-512 horizontal sum.
float hsum16_tree(const float* v);
// Attention helpers: dot product and y += a·x over n floats.
float dot_scalar(const float* a, const float* b, int64_t n);
float dot_avx2(const float* a, const float* b, int64_t n);
float dot_avx512(const float* a, const float* b, int64_t n);
void axpy_scalar(float a, const float* x, float* y, int64_t n);
void axpy_avx2(float a, const float* x, float* y, int64_t n);
void axpy_avx512(float a, const float* x, float* y, int64_t n);
// The f32-activation row kernel and axpy of one ISA level (one table per level, as nv_kernels).
struct LinearKernels {
  void (*rows)(const Linear& w, const float* x, int64_t T, int64_t r0, int64_t r1, float* y, float* scratch);
  void (*axpy)(float a, const float* x, float* y, int64_t n);
};
// The kernels of `isa`, capped by what this CPU runs.
const LinearKernels& linear_kernels(Isa isa);
// Row blocking shared by the kernels: rows dequantized at once, K chunk length.
constexpr int64_t kPanelRows = 32;
constexpr int64_t kPanelK = 1024;
// int8 path: groups of 256 columns per weight panel chunk (32 rows × 4096 columns = 128 KiB, in L2);
// also the chunk after which the f32 lane sums are folded into y (part of the exact result).
constexpr int64_t kInt8ChunkGroups = 16;
}  // namespace kernels

}  // namespace fp4z
