// The absmax pass's scan (largest |w| bit pattern) with AVX-512BW unsigned max; same results as the scalar one.
#include <immintrin.h>

#include <type_traits>

#include "pipeline/amax_scan_simd.h"

namespace fp4z {

namespace {

struct Avx512Ops {
  using V = __m512i;
  static constexpr size_t kBytes = 64;
  static V zero() { return _mm512_setzero_si512(); }
  static V load(const uint8_t* p) { return _mm512_loadu_si512(p); }
  static V and_(V x, V y) { return _mm512_and_si512(x, y); }
  static void store(void* p, V x) { _mm512_storeu_si512(p, x); }
  template <class Lane>
  static V set1(Lane v) {
    if constexpr (std::is_same_v<Lane, uint16_t>) return _mm512_set1_epi16(short(v));
    else return _mm512_set1_epi32(int(v));
  }
  // The zero-masked forms: the plain ones start from an undefined register, which gcc 12 warns about.
  template <class Lane>
  static V max(V x, V y) {
    if constexpr (std::is_same_v<Lane, uint16_t>) return _mm512_maskz_max_epu16(__mmask32(~0u), x, y);
    else return _mm512_maskz_max_epu32(__mmask16(0xFFFF), x, y);
  }
};

}  // namespace

uint16_t abs_max_bits16_avx512(const uint8_t* p, size_t n) { return amax_simd::scan<Avx512Ops, uint16_t>(p, n, 0x7FFF); }
uint32_t abs_max_bits32_avx512(const uint8_t* p, size_t n) { return amax_simd::scan<Avx512Ops, uint32_t>(p, n, 0x7FFFFFFFu); }

}  // namespace fp4z
