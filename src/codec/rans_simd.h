// Run-time selected whole-round rANS decode kernels (scalar fallback always available).
#pragma once
#include "codec/rans.h"
#include "common/cpu.h"

namespace fp4z::rans {

// AVX-512F/BW/VL/DQ kernel (src/codec/rans_avx512.cpp).
size_t decode_rounds_avx512(const DecodeTable& d, uint32_t* x, const uint8_t** pp, const uint8_t* end, uint8_t* out,
                            size_t n);

// The kernel for `isa` (detect_isa() capped by FP4Z_ISA): every kernel gives identical output.
inline DecodeRoundsFn decode_rounds_for(Isa isa) {
  return isa == Isa::kAvx512 ? decode_rounds_avx512 : decode_rounds_scalar;
}

}  // namespace fp4z::rans
