// Run-time instruction-set selection for SIMD kernels; FP4Z_ISA=scalar|avx2|avx512 caps it (tests).
#pragma once

namespace fp4z {

enum class Isa { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

// Best ISA this CPU supports, capped by the FP4Z_ISA environment variable when set.
Isa detect_isa();
const char* isa_name(Isa isa);

}  // namespace fp4z
