// CPU feature detection (once), the FP4Z_ISA cap, and the kernel ISA level.
#include "common/cpu.h"

#include <cstdlib>
#include <cstring>

namespace fp4z {

CpuFeatures detect_cpu_features_uncapped() {
  CpuFeatures f;
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") &&
                    __builtin_cpu_supports("bmi2");
  if (!avx2) return f;
  f.bits |= uint32_t(CpuFeature::kAvx2);
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  if (!avx512) return f;
  f.bits |= uint32_t(CpuFeature::kAvx512);
  if (__builtin_cpu_supports("avx512vnni")) f.bits |= uint32_t(CpuFeature::kAvx512Vnni);
  if (__builtin_cpu_supports("avx512bf16")) f.bits |= uint32_t(CpuFeature::kAvx512Bf16);
  return f;
}

CpuFeatures cap_cpu_features(CpuFeatures f, const char* cap) {
  if (!cap) return f;
  uint32_t keep = ~0u;
  if (!std::strcmp(cap, "scalar")) keep = 0;
  else if (!std::strcmp(cap, "avx2")) keep = uint32_t(CpuFeature::kAvx2);
  else if (!std::strcmp(cap, "avx512")) keep = uint32_t(CpuFeature::kAvx2) | uint32_t(CpuFeature::kAvx512);
  else if (!std::strcmp(cap, "avx512vnni"))
    keep = uint32_t(CpuFeature::kAvx2) | uint32_t(CpuFeature::kAvx512) | uint32_t(CpuFeature::kAvx512Vnni);
  f.bits &= keep;
  return f;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = cap_cpu_features(detect_cpu_features_uncapped(), std::getenv("FP4Z_ISA"));
  return f;
}

Isa detect_isa() {
  const CpuFeatures& f = cpu_features();
  if (f.has(CpuFeature::kAvx512)) return Isa::kAvx512;
  if (f.has(CpuFeature::kAvx2)) return Isa::kAvx2;
  return Isa::kScalar;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx2: return "avx2";
    default: return "scalar";
  }
}

}  // namespace fp4z
