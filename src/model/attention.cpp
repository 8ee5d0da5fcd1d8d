// Attention dispatch (tasks per kv head and query-token tile, ISA choice) and the scalar task.
#include "model/attention.h"

#include "model/attention_impl.h"

namespace fp4z {

namespace kernels {
void attend_scalar(const AttentionArgs& a, int64_t g, int64_t t0, int64_t t1, float* scratch) { attend_impl(a, g, t0, t1, scratch); }

size_t attention_scratch_floats(const AttentionArgs& a) {
  const int64_t rows = kAttnTokens * (a.heads / a.kv_heads);
  return size_t(2 * a.D * kAttnKeys + rows * (a.D + 2) + kAttnKeys);
}
const AttentionKernels& attention_kernels(Isa isa) {
  static const AttentionKernels scalar{attend_scalar}, avx2{attend_avx2}, avx512{attend_avx512};
  const Isa best = detect_isa();
  if (int(isa) > int(best)) isa = best;
  return isa == Isa::kAvx512 ? avx512 : isa == Isa::kAvx2 ? avx2 : scalar;
}
}  // namespace kernels

void attention_forward(const AttentionArgs& a, ThreadPool& pool, Isa isa) {
  const auto attend = kernels::attention_kernels(isa).attend;
  const int64_t tiles = (a.T + kernels::kAttnTokens - 1) / kernels::kAttnTokens;
  const size_t scratch = kernels::attention_scratch_floats(a);
  // Later tiles see more keys: hand them out first so the two threads finish together.
  pool.run(a.kv_heads * tiles, [&](int64_t task, int thread) {
    const int64_t tile = tiles - 1 - task / a.kv_heads, g = task % a.kv_heads;
    const int64_t t0 = tile * kernels::kAttnTokens, t1 = std::min(a.T, t0 + kernels::kAttnTokens);
    attend(a, g, t0, t1, pool.scratch(thread, scratch));
  });
}

}  // namespace fp4z
