// The absmax pass's scan: the largest |w| of F16/BF16 or F32 weights as a bit pattern, per ISA.
#pragma once
#include <cstddef>
#include <cstdint>

#include "common/cpu.h"

namespace fp4z {

// Largest (bits & 0x7FFF) of n 16-bit words / (bits & 0x7FFFFFFF) of n 32-bit words at p (any
// alignment). For IEEE formats these patterns order like |w|, and NaN/Inf lie above every finite
// value. All ISA levels return the same value; the scan is memory-bound only from AVX2 on (SSE2
// has no unsigned 16-bit max).
using AbsMaxBits16Fn = uint16_t (*)(const uint8_t* p, size_t n);
using AbsMaxBits32Fn = uint32_t (*)(const uint8_t* p, size_t n);
struct AmaxKernels {
  AbsMaxBits16Fn bits16;
  AbsMaxBits32Fn bits32;
};
// The kernels of `isa`, capped by what this CPU runs.
const AmaxKernels& amax_kernels(Isa isa);

uint16_t abs_max_bits16_scalar(const uint8_t* p, size_t n);
uint32_t abs_max_bits32_scalar(const uint8_t* p, size_t n);
uint16_t abs_max_bits16_avx2(const uint8_t* p, size_t n);
uint32_t abs_max_bits32_avx2(const uint8_t* p, size_t n);
uint16_t abs_max_bits16_avx512(const uint8_t* p, size_t n);
uint32_t abs_max_bits32_avx512(const uint8_t* p, size_t n);

}  // namespace fp4z
