// The absmax pass's scan (largest |w| bit pattern): portable versions and the per-ISA choice.
#include "pipeline/amax_kernels.h"

#include <cstring>

namespace fp4z {

namespace {

template <class Bits>
Bits max_abs_bits(const uint8_t* p, size_t n, Bits abs_mask) {
  Bits m = 0;
  for (size_t i = 0; i < n; ++i) {
    Bits b;
    std::memcpy(&b, p + i * sizeof(Bits), sizeof(Bits));
    b &= abs_mask;
    m = b > m ? b : m;
  }
  return m;
}

}  // namespace

uint16_t abs_max_bits16_scalar(const uint8_t* p, size_t n) { return max_abs_bits<uint16_t>(p, n, 0x7FFF); }
uint32_t abs_max_bits32_scalar(const uint8_t* p, size_t n) { return max_abs_bits<uint32_t>(p, n, 0x7FFFFFFFu); }

const AmaxKernels& amax_kernels(Isa isa) {
  static const AmaxKernels scalar{abs_max_bits16_scalar, abs_max_bits32_scalar};
  static const AmaxKernels avx2{abs_max_bits16_avx2, abs_max_bits32_avx2};
  static const AmaxKernels avx512{abs_max_bits16_avx512, abs_max_bits32_avx512};
  Isa best = detect_isa();
  if (int(isa) > int(best)) isa = best;
  return isa == Isa::kAvx512 ? avx512 : isa == Isa::kAvx2 ? avx2 : scalar;
}

}  // namespace fp4z
