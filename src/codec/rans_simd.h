// Run-time selected whole-round rANS decode and encode kernels (scalar fallback always available).
#pragma once
#include "codec/rans.h"
#include "common/cpu.h"

namespace fp4z::rans {

// AVX-512F/BW/VL/DQ kernel (src/codec/rans_avx512.cpp).
size_t decode_rounds_avx512(const DecodeTable& d, int lanes, uint32_t* x, const uint8_t** pp, const uint8_t* end,
                            uint8_t* out, size_t n);
void encode_rounds_avx512(const EncodeTable& e, int lanes, const uint8_t* sym, size_t n_rounds, uint32_t* x,
                          uint16_t** pp);

}  // namespace fp4z::rans
