// The absmax pass's scan (largest |w| bit pattern) with AVX2 unsigned max; same results as the scalar one.
#include <immintrin.h>

#include <type_traits>

#include "pipeline/amax_scan_simd.h"

namespace fp4z {

namespace {

struct Avx2Ops {
  using V = __m256i;
  static constexpr size_t kBytes = 32;
  static V zero() { return _mm256_setzero_si256(); }
  static V load(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const V*>(p)); }
  static V and_(V x, V y) { return _mm256_and_si256(x, y); }
  static void store(void* p, V x) { _mm256_storeu_si256(static_cast<V*>(p), x); }
  template <class Lane>
  static V set1(Lane v) {
    if constexpr (std::is_same_v<Lane, uint16_t>) return _mm256_set1_epi16(short(v));
    else return _mm256_set1_epi32(int(v));
  }
  template <class Lane>
  static V max(V x, V y) {
    if constexpr (std::is_same_v<Lane, uint16_t>) return _mm256_max_epu16(x, y);
    else return _mm256_max_epu32(x, y);
  }
};

}  // namespace

uint16_t abs_max_bits16_avx2(const uint8_t* p, size_t n) { return amax_simd::scan<Avx2Ops, uint16_t>(p, n, 0x7FFF); }
uint32_t abs_max_bits32_avx2(const uint8_t* p, size_t n) { return amax_simd::scan<Avx2Ops, uint32_t>(p, n, 0x7FFFFFFFu); }

}  // namespace fp4z
