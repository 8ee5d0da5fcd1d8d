// AVX-512 linear kernels: register-blocked f32 GEMM over exactly dequantized NVFP4 panels, direct
// BF16/F32 weights, and a fused NVFP4 GEMV for generation (one token).
// gcc 12's AVX-512 cast/extract intrinsics use _mm*_undefined_*() and trip -Wuninitialized.
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "model/linear.h"
#include "model/linear_avx512_inl.h"
#include "model/panel_driver.h"
#include "nvfp4/codec.h"

namespace fp4z::kernels {

namespace {

// 16 weights starting at w (f32 or bf16), as f32; `mask` selects valid lanes.
inline __m512 load_w(const float* w, __mmask16 m) { return _mm512_maskz_loadu_ps(m, w); }
inline __m512 load_w(const uint16_t* w, __mmask16 m) {
  __m256i h = _mm256_maskz_loadu_epi16(m, w);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline __m512 load_w(const float* w) { return _mm512_loadu_ps(w); }
inline __m512 load_w(const uint16_t* w) {
  __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// y[t*ldy + r] += Σ_j w[r*ldw + j]·x[t*ldx + j] for r < R, t < TT, j < len.
template <int R, int TT, class WT>
void micro(const WT* w, int64_t ldw, const float* x, int64_t ldx, int64_t len, float* y, int64_t ldy) {
  __m512 acc[R][TT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < TT; ++t) acc[r][t] = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= len; j += 16) {
    __m512 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = load_w(w + r * ldw + j);
    for (int t = 0; t < TT; ++t) {
      __m512 xv = _mm512_loadu_ps(x + t * ldx + j);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  if (j < len) {
    __mmask16 m = __mmask16((1u << (len - j)) - 1);
    __m512 wv[R];
    for (int r = 0; r < R; ++r) wv[r] = load_w(w + r * ldw + j, m);
    for (int t = 0; t < TT; ++t) {
      __m512 xv = _mm512_maskz_loadu_ps(m, x + t * ldx + j);
      for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);
    }
  }
  for (int t = 0; t < TT; ++t)
    for (int r = 0; r < R; ++r) y[t * ldy + r] += hsum(acc[r][t]);
}

constexpr int kTileT = 6;
constexpr int kTileR = 4;

template <int R, class WT>
void micro_rows(const WT* w, int64_t ldw, const float* x, int64_t ldx, int64_t len, int tt, float* y, int64_t ldy) {
  switch (tt) {
    case 1: micro<R, 1>(w, ldw, x, ldx, len, y, ldy); break;
    case 2: micro<R, 2>(w, ldw, x, ldx, len, y, ldy); break;
    case 3: micro<R, 3>(w, ldw, x, ldx, len, y, ldy); break;
    case 4: micro<R, 4>(w, ldw, x, ldx, len, y, ldy); break;
    case 5: micro<R, 5>(w, ldw, x, ldx, len, y, ldy); break;
    default: micro<R, 6>(w, ldw, x, ldx, len, y, ldy); break;
  }
}

// Block product: `rows` weight rows (stride ldw) × T tokens over `len` columns, added into y.
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

// One token, NVFP4, K % 128 == 0. A 64-byte load holds 128 codes; dword lane i carries columns
// 8i..8i+7 of the group, nibble j in bits 4j..4j+3, so `vpermps` on (v >> 4j) decodes column 8i+j of
// every lane without any byte shuffle (vpermps reads only the low 4 index bits). The activations
// are pre-permuted to match: xp[128g + 16j + i] = x[128g + 8i + j]. Column 8i+j lies in block i/2,
// so one scale vector (a gather from the 256-entry E4M3 table) serves the whole group.
void gemv_nvfp4(const Linear& w, const float* xp, int64_t r0, int64_t r1, float* y) {
  const __m512 table = e2m1_table();
  const int64_t K = w.k;
  // 16 block scales (two groups) per table gather; each group picks its 8 with one permute.
  const __m512i half0 = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  const __m512i half1 = _mm512_add_epi32(half0, _mm512_set1_epi32(8));
  auto group = [&](const uint8_t* p, __m512 sv, const float* xg) {
    __m512i v = _mm512_loadu_si512(p);
    __m512 e = _mm512_mul_ps(_mm512_permutexvar_ps(v, table), _mm512_loadu_ps(xg));
    __m512 o = _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), table), _mm512_loadu_ps(xg + 16));
    e = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 8), table), _mm512_loadu_ps(xg + 32), e);
    o = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 12), table), _mm512_loadu_ps(xg + 48), o);
    e = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 16), table), _mm512_loadu_ps(xg + 64), e);
    o = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 20), table), _mm512_loadu_ps(xg + 80), o);
    e = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 24), table), _mm512_loadu_ps(xg + 96), e);
    o = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(v, 28), table), _mm512_loadu_ps(xg + 112), o);
    return _mm512_mul_ps(_mm512_add_ps(e, o), sv);
  };
  auto scales16 = [&](const uint8_t* s) {
    return _mm512_i32gather_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s))), kE4M3.v, 4);
  };
  auto scales8 = [&](const uint8_t* s) {  // a lone trailing group (K % 256 == 128)
    __m128i sb = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(s));
    return _mm512_i32gather_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(sb, sb)), kE4M3.v, 4);
  };
  auto row_dot = [&](const uint8_t* p0, const uint8_t* s0, __m512& a0) {
    int64_t g = 0;
    for (; g + 256 <= K; g += 256) {
      __m512 sv = scales16(s0 + g / 16);
      a0 = _mm512_add_ps(a0, group(p0 + g / 2, _mm512_permutexvar_ps(half0, sv), xp + g));
      a0 = _mm512_add_ps(a0, group(p0 + g / 2 + 64, _mm512_permutexvar_ps(half1, sv), xp + g + 128));
    }
    if (g < K) a0 = _mm512_add_ps(a0, group(p0 + g / 2, scales8(s0 + g / 16), xp + g));
  };
  int64_t r = r0;
  for (; r + 2 <= r1; r += 2) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    row_dot(w.data + r * (K / 2), w.scales + r * (K / 16), a0);
    row_dot(w.data + (r + 1) * (K / 2), w.scales + (r + 1) * (K / 16), a1);
    y[r] = hsum(a0);
    y[r + 1] = hsum(a1);
  }
  for (; r < r1; ++r) {
    __m512 a0 = _mm512_setzero_ps();
    row_dot(w.data + r * (K / 2), w.scales + r * (K / 16), a0);
    y[r] = hsum(a0);
  }
}

}  // namespace

// k % 16 == 0. Per block: the same f32 max/abs, division, product and RNE rounding (vcvtps2dq under
// the default MXCSR) as the scalar version, so the bytes and scales are identical.
void quantize_int8_row_avx512(const float* x, int64_t k, Int8Activations& out, int64_t t) {
  const int64_t G = out.groups;
  int8_t* q = out.q.data() + t * G * 256;
  const __m512 sign = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FFFFFFF));
  const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
  const __m128i order = _mm_setr_epi8(0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15);
  for (int64_t blk = 0; blk * 16 < k; ++blk) {
    __m512 v = _mm512_loadu_ps(x + blk * 16);
    __m512 a = _mm512_and_ps(v, sign);
    a = _mm512_max_ps(a, _mm512_shuffle_f32x4(a, a, 0x4E));
    a = _mm512_max_ps(a, _mm512_shuffle_f32x4(a, a, 0xB1));
    a = _mm512_max_ps(a, _mm512_permute_ps(a, 0x4E));
    a = _mm512_max_ps(a, _mm512_permute_ps(a, 0xB1));
    const float amax = _mm512_cvtss_f32(a);
    if (!(amax > 0.0f) || !(amax <= 3.4028235e38f)) continue;  // zero or non-finite (NaN fails both)
    const float inv = 127.0f / amax;
    __m512i iv = _mm512_cvtps_epi32(_mm512_mul_ps(v, _mm512_set1_ps(inv)));
    iv = _mm512_min_epi32(_mm512_max_epi32(iv, lo), hi);
    __m128i bytes = _mm_shuffle_epi8(_mm512_cvtepi32_epi8(iv), order);
    const int64_t g = blk / 16, b = blk % 16;
    int8_t* dst = q + g * 256 + b * 4;
    alignas(16) int32_t d[4];
    _mm_store_si128(reinterpret_cast<__m128i*>(d), bytes);
    for (int s = 0; s < 4; ++s) std::memcpy(dst + 64 * s, &d[s], 4);
    int32_t lanes[16];
    _mm512_storeu_si512(lanes, iv);
    int32_t sum = 0;
    for (int j = 0; j < 16; ++j) sum += lanes[j];
    out.scale[size_t(t * G * 16 + blk)] = amax / 127.0f;
    out.corr[size_t(t * G * 16 + blk)] = -12 * sum;
  }
}

float dot_avx512(const float* a, const float* b, int64_t n) {
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
  }
  for (; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), s0);
  }
  return hsum(_mm512_add_ps(s0, s1));
}

void axpy_avx512(float a, const float* x, float* y, int64_t n) {
  const __m512 av = _mm512_set1_ps(a);
  for (int64_t i = 0; i < n; i += 16) {
    __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}

void rows_avx512(const Linear& w, const float* x, int64_t T, int64_t r0, int64_t r1, float* y, float* scratch) {
  const int64_t K = w.k;
  if (w.kind == WeightKind::kNvfp4 && T == 1 && K % 128 == 0) {
    float* xp = scratch + kPanelRows * kPanelK;
    for (int64_t g = 0; g < K; g += 128)
      for (int j = 0; j < 8; ++j)
        for (int i = 0; i < 16; ++i) xp[g + 16 * j + i] = x[g + 8 * i + j];
    gemv_nvfp4(w, xp, r0, r1, y);
    return;
  }
  rows_by_panels(w, x, T, r0, r1, y, scratch, [](auto... a) { block_gemm(a...); }, dequant_nvfp4);
}

}  // namespace fp4z::kernels
