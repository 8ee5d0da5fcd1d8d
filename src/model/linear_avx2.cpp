// AVX2/FMA linear kernels: register-blocked f32 GEMM over exactly dequantized NVFP4 panels and
// direct BF16/F32 weights, and the int8-activation NVFP4 kernel without VNNI (vpmaddubsw).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
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
  for (; i < n; ++i) y[i] = std::fma(a, x[i], y[i]);  // fused like the vector body and axpy_scalar
}

// AVX2 has no VNNI (AVX-VNNI is a separate feature): vpmaddubsw sums byte pairs into int16 (at most
// 2·24·127, no saturation), vpmaddwd with ones sums those into the same int32 dword lanes vpdpbusd
// fills. Each (row, token) is computed straight from the packed weights; the f32 steps are those of
// rows_int8_scalar, the 16 block lanes split over two ymm registers.
void rows_int8_avx2(const Linear& w, const uint8_t* packed, const Int8Activations& xa, int64_t r0, int64_t r1, float* y, float*) {
  const int64_t N = w.n, T = xa.T, G = xa.groups, ldx = G * 256, lds = G * 16;
  const uint8_t* scales = int8_layout::scales(packed, N, w.k);
  const __m256i lut = _mm256_broadcastsi128_si256(_mm_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0));
  const __m256i nib = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1), f16_bits = _mm256_set1_epi16(0x3F80);
  const __m256 k128 = _mm256_set1_ps(128.0f);
  for (int64_t r = r0; r < r1; ++r)
    for (int64_t t = 0; t < T; ++t) {
      float out = 0.0f;
      for (int64_t g0 = 0; g0 < G; g0 += kInt8ChunkGroups) {
        __m256 f[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
        for (int64_t g = g0; g < std::min(G, g0 + kInt8ChunkGroups); ++g) {
          const uint8_t* p = packed + r * G * 128 + g * 128;
          const int8_t* xg = xa.q.data() + t * ldx + g * 256;
          __m128i sb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(scales + r * G * 16 + g * 16));
          __m256i h16 = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepu8_epi16(sb), 7), f16_bits);
          __m256 ws[2] = {_mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h16)), k128),
                          _mm256_mul_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h16, 1)), k128)};
          for (int h = 0; h < 2; ++h) {  // block lanes 8h .. 8h+7
            __m256i acc = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xa.corr.data() + t * lds + g * 16 + 8 * h));
            for (int u = 0; u < 2; ++u) {
              __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 64 * u + 32 * h));
              __m256i wl = _mm256_shuffle_epi8(lut, _mm256_and_si256(v, nib));
              __m256i wh = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), nib));
              __m256i xl = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xg + 64 * (2 * u) + 32 * h));
              __m256i xh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xg + 64 * (2 * u + 1) + 32 * h));
              acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(wl, xl), ones));
              acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(wh, xh), ones));
            }
            __m256 xs = _mm256_loadu_ps(xa.scale.data() + t * lds + g * 16 + 8 * h);
            f[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_mul_ps(ws[h], xs), f[h]);
          }
        }
        // hsum16_tree: lanes i + i+8, then i + i+4, then (0+2) + (1+3).
        __m256 s8 = _mm256_add_ps(f[0], f[1]);
        __m128 q = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
        q = _mm_add_ps(q, _mm_movehl_ps(q, q));
        q = _mm_add_ss(q, _mm_movehdup_ps(q));
        out += _mm_cvtss_f32(q);
      }
      y[t * N + r] = out;
    }
}

void rows_avx2(const Linear& w, const float* x, int64_t T, int64_t r0, int64_t r1, float* y, float* scratch) {
  rows_by_panels(w, x, T, r0, r1, y, scratch, [](auto... a) { block_gemm(a...); }, dequant_nvfp4);
}

}  // namespace fp4z::kernels
