// Run-time instruction-set selection for SIMD kernels.
#include "common/cpu.h"

#include <cstdlib>
#include <cstring>

namespace fp4z {

Isa detect_isa() {
  Isa best = Isa::kScalar;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2")) best = Isa::kAvx2;
  if (best == Isa::kAvx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    best = Isa::kAvx512;
  if (const char* cap = std::getenv("FP4Z_ISA")) {
    Isa want = best;
    if (!std::strcmp(cap, "scalar")) want = Isa::kScalar;
    else if (!std::strcmp(cap, "avx2")) want = Isa::kAvx2;
    else if (!std::strcmp(cap, "avx512")) want = Isa::kAvx512;
    if (int(want) < int(best)) best = want;
  }
  return best;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "scalar";
  }
}

}  // namespace fp4z
