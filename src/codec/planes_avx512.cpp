// AVX-512BW kernels for the BF16 byte-plane transform (split for encoding, merge for decoding); the
// scalar loops in chunk_codec.cpp define the result and the tests compare both.
#include <immintrin.h>

#include "codec/planes.h"

namespace fp4z::codec {

void merge_bf16_avx512(const uint8_t* exp, const uint8_t* sm, size_t m, uint8_t* out) {
  size_t i = 0;
  const __m512i low7 = _mm512_set1_epi16(0x7F), sign = _mm512_set1_epi16(0x80);
  for (; i + 32 <= m; i += 32) {
    __m512i e = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(exp + i)));
    __m512i s = _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sm + i)));
    __m512i v = _mm512_or_si512(_mm512_slli_epi16(_mm512_and_si512(s, sign), 8),
                                _mm512_or_si512(_mm512_slli_epi16(e, 7), _mm512_and_si512(s, low7)));
    _mm512_storeu_si512(out + 2 * i, v);
  }
  merge_bf16_scalar(exp + i, sm + i, m - i, out + 2 * i);
}

void split_bf16_avx512(const uint8_t* raw, size_t m, uint8_t* exp, uint8_t* sm) {
  size_t i = 0;
  const __m512i low7 = _mm512_set1_epi16(0x7F), sign = _mm512_set1_epi16(0x80);
  for (; i + 32 <= m; i += 32) {
    __m512i v = _mm512_loadu_si512(raw + 2 * i);
    __m512i e = _mm512_and_si512(_mm512_srli_epi16(v, 7), _mm512_set1_epi16(0xFF));
    __m512i s = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(v, 8), sign), _mm512_and_si512(v, low7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(exp + i), _mm512_cvtepi16_epi8(e));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(sm + i), _mm512_cvtepi16_epi8(s));
  }
  split_bf16_scalar(raw + 2 * i, m - i, exp + i, sm + i);
}

}  // namespace fp4z::codec
