// The CPU's SIMD features, detected once, and the instruction-set level kernels are chosen by;
// FP4Z_ISA=scalar|avx2|avx512|avx512vnni|avx512bf16 caps both (tests force each level with it).
#pragma once
#include <cstdint>

namespace fp4z {

// One bit per feature a kernel file may be compiled for (see CMakeLists.txt's ISA file rule).
enum class CpuFeature : uint32_t {
  kAvx2 = 1u << 0,   // with FMA, F16C and BMI2: what *_avx2.cpp files are compiled for
  kAvx512 = 1u << 1,  // AVX-512 F, BW, VL and DQ: *_avx512.cpp
  kAvx512Vnni = 1u << 2,  // *_avx512vnni.cpp
  kAvx512Bf16 = 1u << 3,  // *_avx512bf16.cpp
};

struct CpuFeatures {
  uint32_t bits = 0;
  bool has(CpuFeature f) const { return (bits & uint32_t(f)) != 0; }
};

// Detected on first use (thread-safe), then capped by FP4Z_ISA: "scalar" none, "avx2" kAvx2,
// "avx512" kAvx2|kAvx512 (no VNNI, no BF16: a Skylake-SP), "avx512vnni" adds VNNI (an Ice Lake),
// "avx512bf16" everything. Each level needs the ones below it; an unknown value caps nothing.
const CpuFeatures& cpu_features();
// Detection without the cache or the cap (for tests and reports).
CpuFeatures detect_cpu_features_uncapped();
// Applies an FP4Z_ISA value to a feature set.
CpuFeatures cap_cpu_features(CpuFeatures f, const char* fp4z_isa);

// Vector width level of the kernel tables: kAvx512 when cpu_features() has kAvx512, etc.
enum class Isa { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };
Isa detect_isa();
const char* isa_name(Isa isa);

}  // namespace fp4z
