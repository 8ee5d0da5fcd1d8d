// AVX-512 whole-round rANS decoder: 32 lanes as two 16-lane vectors, table gathers, renormalisation words
// distributed with a masked expand. Produces exactly what decode_rounds_scalar produces (invariant I7).
#include <immintrin.h>

#include "codec/rans_simd.h"

namespace fp4z::rans {

static_assert(kLanes == 32, "the AVX-512 kernel handles exactly two vectors of 16 lanes");

size_t decode_rounds_avx512(const DecodeTable& d, uint32_t* x, const uint8_t** pp, const uint8_t* end, uint8_t* out,
                            size_t n) {
  const uint8_t* p = *pp;
  size_t i = 0;
  const __m512i mask = _mm512_set1_epi32(int(kMask));
  const __m512i lower = _mm512_set1_epi32(int(kLower));
  const int* table = reinterpret_cast<const int*>(d.slot);
  __m512i x0 = _mm512_loadu_si512(x), x1 = _mm512_loadu_si512(x + 16);
  // One step of 16 lanes; the group's renormalising lanes take the next words in lane order.
  auto step = [&](__m512i xs, uint8_t* o) {
    __m512i e = _mm512_i32gather_epi32(_mm512_and_si512(xs, mask), table, 4);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o), _mm512_cvtepi32_epi8(e));
    __m512i freq = _mm512_srli_epi32(e, 20);
    __m512i bias = _mm512_and_si512(_mm512_srli_epi32(e, 8), mask);
    __m512i v = _mm512_add_epi32(_mm512_mullo_epi32(freq, _mm512_srli_epi32(xs, kScaleBits)), bias);
    __mmask16 need = _mm512_cmplt_epu32_mask(v, lower);
    // 16 words starting at p (32 bytes, in bounds by the loop condition), zero-extended, then
    // spread so that the k-th renormalising lane gets word k.
    __m512i words = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    __m512i spread = _mm512_maskz_expand_epi32(need, words);
    p += 2 * _mm_popcnt_u32(need);
    return _mm512_mask_or_epi32(v, need, _mm512_slli_epi32(v, 16), spread);
  };
  while (i + kLanes <= n && size_t(end - p) >= 2 * size_t(kLanes)) {
    x0 = step(x0, out + i);
    x1 = step(x1, out + i + 16);
    i += kLanes;
  }
  _mm512_storeu_si512(x, x0);
  _mm512_storeu_si512(x + 16, x1);
  *pp = p;
  return i;
}

}  // namespace fp4z::rans
