// The absmax pass's scan (largest |w| bit pattern) with AVX2 unsigned max; same results as the scalar one.
#include <immintrin.h>

#include "pipeline/amax_kernels.h"

namespace fp4z {

namespace {

// Two accumulators per call keep two loads in flight; the tail goes through the scalar scan.
template <class Lane, class MaxFn, class SetFn>
Lane scan(const uint8_t* p, size_t n, Lane mask_value, MaxFn vmax, SetFn set1) {
  constexpr size_t kLanes = 32 / sizeof(Lane);
  const __m256i mask = set1(mask_value);
  __m256i a = _mm256_setzero_si256(), b = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
    a = vmax(a, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i * sizeof(Lane))), mask));
    b = vmax(b, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + (i + kLanes) * sizeof(Lane))), mask));
  }
  a = vmax(a, b);
  alignas(32) Lane lanes[kLanes];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(lanes), a);
  Lane m = 0;
  for (Lane x : lanes) m = x > m ? x : m;
  Lane t = sizeof(Lane) == 2 ? Lane(abs_max_bits16_scalar(p + i * 2, n - i)) : Lane(abs_max_bits32_scalar(p + i * 4, n - i));
  return t > m ? t : m;
}

}  // namespace

uint16_t abs_max_bits16_avx2(const uint8_t* p, size_t n) {
  return scan<uint16_t>(p, n, uint16_t(0x7FFF), [](__m256i x, __m256i y) { return _mm256_max_epu16(x, y); }, [](uint16_t v) { return _mm256_set1_epi16(short(v)); });
}

uint32_t abs_max_bits32_avx2(const uint8_t* p, size_t n) {
  return scan<uint32_t>(p, n, 0x7FFFFFFFu, [](__m256i x, __m256i y) { return _mm256_max_epu32(x, y); }, [](uint32_t v) { return _mm256_set1_epi32(int(v)); });
}

}  // namespace fp4z
