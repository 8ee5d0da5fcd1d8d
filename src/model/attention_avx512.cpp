// The flash-attention task compiled for AVX-512F.
#include "model/attention_impl.h"

namespace fp4z::kernels {
void attend_avx512(const AttentionArgs& a, int64_t g, int64_t t0, int64_t t1, float* scratch) { attend_impl(a, g, t0, t1, scratch); }
}  // namespace fp4z::kernels
