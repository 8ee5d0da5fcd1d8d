// The absmax pass's scan (largest |w| bit pattern) with AVX-512BW unsigned max; same results as the scalar one.
#include <immintrin.h>

#include "pipeline/amax_kernels.h"

namespace fp4z {

namespace {

// Two accumulators per call keep two loads in flight; the tail goes through the scalar scan.
template <class Lane, class MaxFn, class SetFn>
Lane scan(const uint8_t* p, size_t n, Lane mask_value, MaxFn vmax, SetFn set1) {
  constexpr size_t kLanes = 64 / sizeof(Lane);
  const __m512i mask = set1(mask_value);
  __m512i a = _mm512_setzero_si512(), b = _mm512_setzero_si512();
  size_t i = 0;
  for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
    a = vmax(a, _mm512_and_si512(_mm512_loadu_si512(reinterpret_cast<const __m512i*>(p + i * sizeof(Lane))), mask));
    b = vmax(b, _mm512_and_si512(_mm512_loadu_si512(reinterpret_cast<const __m512i*>(p + (i + kLanes) * sizeof(Lane))), mask));
  }
  a = vmax(a, b);
  alignas(64) Lane lanes[kLanes];
  _mm512_storeu_si512(reinterpret_cast<__m512i*>(lanes), a);
  Lane m = 0;
  for (Lane x : lanes) m = x > m ? x : m;
  Lane t = sizeof(Lane) == 2 ? Lane(abs_max_bits16_scalar(p + i * 2, n - i)) : Lane(abs_max_bits32_scalar(p + i * 4, n - i));
  return t > m ? t : m;
}

}  // namespace

uint16_t abs_max_bits16_avx512(const uint8_t* p, size_t n) {
  return scan<uint16_t>(p, n, uint16_t(0x7FFF), [](__m512i x, __m512i y) { return _mm512_maskz_max_epu16(__mmask32(~0u), x, y); }, [](uint16_t v) { return _mm512_set1_epi16(short(v)); });
}

uint32_t abs_max_bits32_avx512(const uint8_t* p, size_t n) {
  return scan<uint32_t>(p, n, 0x7FFFFFFFu, [](__m512i x, __m512i y) { return _mm512_maskz_max_epu32(__mmask16(0xFFFF), x, y); }, [](uint32_t v) { return _mm512_set1_epi32(int(v)); });
}

}  // namespace fp4z
