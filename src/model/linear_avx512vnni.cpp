// AVX-512 VNNI kernel of the int8-activation NVFP4 prompt path (vpdpbusd); called only when the CPU has AVX512_VNNI.
// gcc 12's AVX-512 cast/extract intrinsics use _mm*_undefined_*() and trip -Wuninitialized.
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "model/linear.h"
#include "model/linear_avx512_inl.h"
#include "nvfp4/codec.h"

namespace fp4z::kernels {

namespace {

// ---- int8 activations × E2M1 codes (vpdpbusd) ----

constexpr int64_t kInt8Ld = kInt8ChunkGroups * 256;  // panel row stride (bytes)

// One group of 256 columns of one NVFP4 row (128 code bytes = 16 qwords, qword b = block b) into the
// panel order of Int8Activations: dword lane b of output vector s holds word s of qword b, its
// nibbles n0 n1 n2 n3 spread to bytes as n0 n2 n1 n3, then mapped to 2·E2M1 + 12 by vpshufb.
inline void unpack_int8_group(const uint8_t* p, const uint8_t* sc, uint8_t* wp, float* ws) {
  alignas(64) static constexpr int16_t kIdx[4][32] = {
#define FP4Z_IDX(s) {0 + s, 0, 4 + s, 0, 8 + s, 0, 12 + s, 0, 16 + s, 0, 20 + s, 0, 24 + s, 0, 28 + s, 0, \
                     32 + s, 0, 36 + s, 0, 40 + s, 0, 44 + s, 0, 48 + s, 0, 52 + s, 0, 56 + s, 0, 60 + s, 0}
      FP4Z_IDX(0), FP4Z_IDX(1), FP4Z_IDX(2), FP4Z_IDX(3)
#undef FP4Z_IDX
  };
  const __m512i lut = _mm512_broadcast_i32x4(_mm_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0));
  const __m512i lo_mask = _mm512_set1_epi32(0x00000F0F), hi_mask = _mm512_set1_epi32(0x0F0F0000);
  const __m512i q0 = _mm512_loadu_si512(p), q1 = _mm512_loadu_si512(p + 64);
  for (int s = 0; s < 4; ++s) {
    __m512i d = _mm512_maskz_permutex2var_epi16(0x55555555u, q0, _mm512_load_si512(kIdx[s]), q1);
    __m512i t = _mm512_or_si512(_mm512_and_si512(d, lo_mask), _mm512_and_si512(_mm512_slli_epi32(d, 12), hi_mask));
    _mm512_storeu_si512(wp + 64 * s, _mm512_shuffle_epi8(lut, t));
  }
  __m512 sv = _mm512_i32gather_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sc))), kE4M3.v, 4);
  _mm512_storeu_ps(ws, _mm512_mul_ps(sv, _mm512_set1_ps(0.5f)));
}

// y[t·ldy + r] += Σ over ng groups of the int8 products of R panel rows and TT tokens.
template <int R, int TT>
void micro_int8(const uint8_t* wp, const float* ws, const int8_t* xq, int64_t ldx, const float* xs, const int32_t* xc,
                int64_t lds, int64_t ng, float* y, int64_t ldy) {
  __m512 f[R][TT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < TT; ++t) f[r][t] = _mm512_setzero_ps();
  for (int64_t g = 0; g < ng; ++g) {
    __m512i acc[R][TT];
    for (int t = 0; t < TT; ++t) {
      __m512i c = _mm512_loadu_si512(xc + t * lds + g * 16);
      for (int r = 0; r < R; ++r) acc[r][t] = c;
    }
    for (int s = 0; s < 4; ++s) {
      __m512i wv[R];
      for (int r = 0; r < R; ++r) wv[r] = _mm512_loadu_si512(wp + r * kInt8Ld + g * 256 + 64 * s);
      for (int t = 0; t < TT; ++t) {
        __m512i xv = _mm512_loadu_si512(xq + t * ldx + g * 256 + 64 * s);
        for (int r = 0; r < R; ++r) acc[r][t] = _mm512_dpbusd_epi32(acc[r][t], wv[r], xv);
      }
    }
    for (int r = 0; r < R; ++r) {
      __m512 wsv = _mm512_loadu_ps(ws + r * (kInt8Ld / 16) + g * 16);
      for (int t = 0; t < TT; ++t)
        f[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][t]), _mm512_mul_ps(wsv, _mm512_loadu_ps(xs + t * lds + g * 16)), f[r][t]);
    }
  }
  for (int t = 0; t < TT; ++t)
    for (int r = 0; r < R; ++r) y[t * ldy + r] += hsum(f[r][t]);
}

constexpr int kInt8TileR = 4;
constexpr int kInt8TileT = 2;

template <int R>
void micro_int8_rows(const uint8_t* wp, const float* ws, const int8_t* xq, int64_t ldx, const float* xs, const int32_t* xc,
                     int64_t lds, int64_t ng, int tt, float* y, int64_t ldy) {
  switch (tt) {
    case 1: micro_int8<R, 1>(wp, ws, xq, ldx, xs, xc, lds, ng, y, ldy); break;
    case 2: micro_int8<R, 2>(wp, ws, xq, ldx, xs, xc, lds, ng, y, ldy); break;
    case 3: micro_int8<R, 3>(wp, ws, xq, ldx, xs, xc, lds, ng, y, ldy); break;
    default: micro_int8<R, 4>(wp, ws, xq, ldx, xs, xc, lds, ng, y, ldy); break;
  }
}

}  // namespace

void rows_int8_avx512(const Linear& w, const Int8Activations& xa, int64_t r0, int64_t r1, float* y, float* scratch) {
  const int64_t N = w.n, T = xa.T, G = xa.groups, ldx = G * 256, lds = G * 16;
  const int64_t full_groups = w.k / 256;  // groups without padding
  constexpr int64_t kChunkGroups = kInt8ChunkGroups;
  for (int64_t t = 0; t < T; ++t) std::fill(y + t * N + r0, y + t * N + r1, 0.0f);
  uint8_t* wp = reinterpret_cast<uint8_t*>(scratch);
  float* ws = scratch + kPanelRows * kInt8Ld / 4;
  for (int64_t rb = r0; rb < r1; rb += kPanelRows) {
    int64_t rows = std::min(kPanelRows, r1 - rb);
    for (int64_t g0 = 0; g0 < G; g0 += kChunkGroups) {
      int64_t ng = std::min(kChunkGroups, G - g0);
      for (int64_t i = 0; i < rows; ++i) {
        const uint8_t* p = w.data + (rb + i) * (w.k / 2);
        const uint8_t* sc = w.scales + (rb + i) * (w.k / 16);
        for (int64_t g = 0; g < ng; ++g) {
          uint8_t* wpg = wp + i * kInt8Ld + g * 256;
          float* wsg = ws + i * (kInt8Ld / 16) + g * 16;
          if (g0 + g < full_groups)
            unpack_int8_group(p + (g0 + g) * 128, sc + (g0 + g) * 16, wpg, wsg);
          else
            unpack_int8_scalar(w, rb + i, g0 + g, 1, wpg, wsg);
        }
      }
      const int8_t* xq = xa.q.data() + g0 * 256;
      const float* xs = xa.scale.data() + g0 * 16;
      const int32_t* xc = xa.corr.data() + g0 * 16;
      for (int64_t t0 = 0; t0 < T; t0 += kInt8TileT) {
        int tt = int(std::min<int64_t>(kInt8TileT, T - t0));
        int64_t i = 0;
        for (; i + kInt8TileR <= rows; i += kInt8TileR)
          micro_int8_rows<kInt8TileR>(wp + i * kInt8Ld, ws + i * (kInt8Ld / 16), xq + t0 * ldx, ldx, xs + t0 * lds,
                                      xc + t0 * lds, lds, ng, tt, y + t0 * N + rb + i, N);
        for (; i < rows; ++i)
          micro_int8_rows<1>(wp + i * kInt8Ld, ws + i * (kInt8Ld / 16), xq + t0 * ldx, ldx, xs + t0 * lds, xc + t0 * lds,
                             lds, ng, tt, y + t0 * N + rb + i, N);
      }
    }
  }
}

}  // namespace fp4z::kernels
