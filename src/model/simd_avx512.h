// AVX-512F helpers shared by the AVX-512 kernel files (static: each ISA file compiles its own copy).
#pragma once
#include <immintrin.h>

namespace fp4z::kernels {

// Horizontal sum in the order of hsum16_tree (gcc 12's _mm512_reduce_add_ps trips -Wuninitialized).
static inline float hsum512(__m512 v) {
  __m512 s = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));
  __m256 h = _mm512_castps512_ps256(s);
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}

}  // namespace fp4z::kernels
