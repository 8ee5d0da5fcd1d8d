// AVX-512 (F/BW/VL/DQ) helpers shared by the linear_avx512*.cpp kernel files; include only from files
// compiled with at least the *_avx512.cpp flags.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "model/linear.h"
#include "nvfp4/codec.h"

namespace fp4z::kernels {
namespace {

// Horizontal sum (gcc 12's _mm512_reduce_add_ps trips -Wuninitialized).
[[maybe_unused]] inline float hsum(__m512 v) {
  __m512 s = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));
  __m256 h = _mm512_castps512_ps256(s);
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

[[maybe_unused]] inline __m512 e2m1_table() { return _mm512_loadu_ps(kE2M1Value); }

// Exact dequantization of NVFP4 row r, columns [c0, c0+len) (len % 16 == 0) to f32.
[[maybe_unused]] void dequant_nvfp4(const Linear& w, int64_t r, int64_t c0, int64_t len, float* out) {
  const __m512 table = e2m1_table();
  const __m512i ilo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i ihi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const uint8_t* p = w.data + r * (w.k / 2) + c0 / 2;
  const uint8_t* s = w.scales + r * (w.k / 16) + c0 / 16;
  int64_t j = 0;
  for (; j + 32 <= len; j += 32) {
    __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + j / 2)));
    __m512 lo = _mm512_permutexvar_ps(v, table);  // even columns (index uses the low 4 bits)
    __m512 hi = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), table);
    __m512 a = _mm512_permutex2var_ps(lo, ilo, hi);
    __m512 b = _mm512_permutex2var_ps(lo, ihi, hi);
    _mm512_storeu_ps(out + j, _mm512_mul_ps(a, _mm512_set1_ps(kE4M3.v[s[j / 16]])));
    _mm512_storeu_ps(out + j + 16, _mm512_mul_ps(b, _mm512_set1_ps(kE4M3.v[s[j / 16 + 1]])));
  }
  if (j < len) {  // one trailing block of 16
    __m512i v = _mm512_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + j / 2)));
    __m512 lo = _mm512_permutexvar_ps(v, table);
    __m512 hi = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), table);
    __m512 a = _mm512_permutex2var_ps(lo, ilo, hi);
    _mm512_storeu_ps(out + j, _mm512_mul_ps(a, _mm512_set1_ps(kE4M3.v[s[j / 16]])));
  }
}

}  // namespace
}  // namespace fp4z::kernels
