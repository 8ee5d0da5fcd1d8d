// Causal grouped-query attention over the KV cache, flash style: keys in tiles, online softmax.
#pragma once
#include <cstdint>

#include "common/cpu.h"
#include "model/thread_pool.h"

namespace fp4z {

// T query tokens at positions pos0..pos0+T-1; query token t sees cache positions 0..pos0+t.
struct AttentionArgs {
  const float* q = nullptr;  // [T, heads·D] (RoPE applied)
  int64_t T = 0, heads = 0, kv_heads = 0, D = 0, pos0 = 0;
  // Cache rows of positions 0..pos0+T-1: position p, kv head g at (k|v)[p·kv_stride + g·D], F32 or
  // BF16 (then k16/v16 are set instead of k/v).
  const float* k = nullptr;
  const float* v = nullptr;
  const uint16_t* k16 = nullptr;
  const uint16_t* v16 = nullptr;
  int64_t kv_stride = 0;
  float scale = 1.0f;    // 1/sqrt(D)
  float* out = nullptr;  // [T, heads·D]
};

// Results of the ISAs agree within f32 rounding (not bit-identical: FMA contraction differs).
void attention_forward(const AttentionArgs& a, ThreadPool& pool, Isa isa);

namespace kernels {
// Query tokens per task and keys per tile (rows of one task: kAttnTokens × heads per kv head).
constexpr int64_t kAttnTokens = 16;
constexpr int64_t kAttnKeys = 32;
// One task: kv head g, query tokens [t0, t1). `scratch` holds attention_scratch_floats(a) floats.
void attend_scalar(const AttentionArgs& a, int64_t g, int64_t t0, int64_t t1, float* scratch);
void attend_avx2(const AttentionArgs& a, int64_t g, int64_t t0, int64_t t1, float* scratch);
void attend_avx512(const AttentionArgs& a, int64_t g, int64_t t0, int64_t t1, float* scratch);
// The attention task of one ISA level (one table per level, as nv_kernels).
struct AttentionKernels {
  void (*attend)(const AttentionArgs& a, int64_t g, int64_t t0, int64_t t1, float* scratch);
};
// The kernels of `isa`, capped by what this CPU runs.
const AttentionKernels& attention_kernels(Isa isa);
size_t attention_scratch_floats(const AttentionArgs& a);
}  // namespace kernels

}  // namespace fp4z
