// AVX2/FMA linear kernels: register-blocked f32 GEMM over exactly dequantized NVFP4 panels and
// direct BF16/F32 weights.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "model/linear.h"
#include "model/panel_driver.h"
#include "nvfp4/codec.h"

namespace fp4z::kernels {

namespace {

inline __m256 load_w(const float* w) { return _mm256_loadu_ps(w); }
inline __m256 load_w(const uint16_t* w) {
  __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline float load_w1(const float* w) { return *w; }
inline float load_w1(const uint16_t* w) { return bf16_to_f32(*w); }

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// y[t*ldy + r] += Σ_j w[r*ldw + j]·x[t*ldx + j] for r < R, t < TT, j < len.
template <int R, int TT, class WT>
void micro(const WT* w, int64_t ldw, const float* x, int64_t ldx, int64_t len, float* y, int64_t ldy) {
  __m256 acc[R][TT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < TT; ++t) acc[r][t] = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 8 <= len; j += 8) {
    __m256 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = load_w(w + r * ldw + j);
    for (int t = 0; t < TT; ++t) {
      __m256 xv = _mm256_loadu_ps(x + t * ldx + j);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int t = 0; t < TT; ++t)
    for (int r = 0; r < R; ++r) {
      float s = hsum(acc[r][t]);
      for (int64_t i = j; i < len; ++i) s += load_w1(w + r * ldw + i) * x[t * ldx + i];
      y[t * ldy + r] += s;
    }
}

constexpr int kTileT = 3;
constexpr int kTileR = 4;

template <int R, class WT>
void micro_rows(const WT* w, int64_t ldw, const float* x, int64_t ldx, int64_t len, int tt, float* y, int64_t ldy) {
  switch (tt) {
    case 1: micro<R, 1>(w, ldw, x, ldx, len, y, ldy); break;
    case 2: micro<R, 2>(w, ldw, x, ldx, len, y, ldy); break;
    default: micro<R, 3>(w, ldw, x, ldx, len, y, ldy); break;
  }
}

template <class WT>
void block_gemm(const WT* w, int64_t ldw, int64_t rows, const float* x, int64_t ldx, int64_t T, int64_t len,
                float* y, int64_t ldy) {
  for (int64_t t0 = 0; t0 < T; t0 += kTileT) {
    int tt = int(std::min<int64_t>(kTileT, T - t0));
    int64_t r = 0;
    for (; r + kTileR <= rows; r += kTileR)
      micro_rows<kTileR>(w + r * ldw, ldw, x + t0 * ldx, ldx, len, tt, y + t0 * ldy + r, ldy);
    for (; r < rows; ++r) micro_rows<1>(w + r * ldw, ldw, x + t0 * ldx, ldx, len, tt, y + t0 * ldy + r, ldy);
  }
}

// Exact dequantization of NVFP4 row r, columns [c0, c0+len) (len % 16 == 0) to f32.
// Magnitudes by an 8-entry permute, sign bit moved from nibble bit 3 to float bit 31.
void dequant_nvfp4(const Linear& w, int64_t r, int64_t c0, int64_t len, float* out) {
  const __m256 mag = _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f);
  const __m256i m15 = _mm256_set1_epi32(15);
  const __m256i signbit = _mm256_set1_epi32(int(0x80000000u));
  const uint8_t* p = w.data + r * (w.k / 2) + c0 / 2;
  const uint8_t* s = w.scales + r * (w.k / 16) + c0 / 16;
  for (int64_t j = 0; j < len; j += 16) {
    __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + j / 2)));
    __m256i lo = _mm256_and_si256(v, m15);
    __m256i hi = _mm256_srli_epi32(v, 4);
    __m256 flo = _mm256_or_ps(_mm256_permutevar8x32_ps(mag, lo),
                              _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(lo, 28), signbit)));
    __m256 fhi = _mm256_or_ps(_mm256_permutevar8x32_ps(mag, hi),
                              _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(hi, 28), signbit)));
    __m256 a = _mm256_unpacklo_ps(flo, fhi);  // e0 e1 e2 e3 | e8 e9 e10 e11
    __m256 b = _mm256_unpackhi_ps(flo, fhi);  // e4 e5 e6 e7 | e12 e13 e14 e15
    __m256 sc = _mm256_set1_ps(kE4M3.v[s[j / 16]]);
    _mm256_storeu_ps(out + j, _mm256_mul_ps(_mm256_permute2f128_ps(a, b, 0x20), sc));
    _mm256_storeu_ps(out + j + 8, _mm256_mul_ps(_mm256_permute2f128_ps(a, b, 0x31), sc));
  }
}

}  // namespace

float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  float s = hsum(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

void axpy_avx2(float a, const float* x, float* y, int64_t n) {
  const __m256 av = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

void rows_avx2(const Linear& w, const float* x, int64_t T, int64_t r0, int64_t r1, float* y, float* scratch) {
  rows_by_panels(w, x, T, r0, r1, y, scratch, [](auto... a) { block_gemm(a...); }, dequant_nvfp4);
}

}  // namespace fp4z::kernels
