// AVX-512 VNNI int8 kernels: NVFP4 codes (repacked, int8_layout) × int8 activations with vpdpbusd, a
// streaming GEMV for generation and an L2 panel GEMM for prompts. Compiled with -mavx512vnni; called
// only when the CPU reports AVX512_VNNI. Bit-identical to rows_int8_scalar (see linear.h).
// gcc 12's AVX-512 cast/extract intrinsics use _mm*_undefined_*() and trip -Wuninitialized.
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>

#include <algorithm>

#include "model/linear.h"
#include "model/simd_avx512.h"

namespace fp4z::kernels {

namespace {

constexpr int64_t kLd = kInt8ChunkGroups * 256;  // panel row stride (bytes)

// 2·E2M1 + 12 per nibble, for vpshufb (indices 0..15, one table per 128-bit lane).
inline __m512i e2m1_lut() {
  return _mm512_broadcast_i32x4(_mm_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0));
}

// The two weight vectors (s = 2u, 2u+1) of one 64-byte half of a packed group.
inline void decode_half(const uint8_t* p, __m512i lut, __m512i& lo, __m512i& hi) {
  const __m512i m = _mm512_set1_epi8(0x0F);
  const __m512i v = _mm512_loadu_si512(p);
  lo = _mm512_shuffle_epi8(lut, _mm512_and_si512(v, m));
  hi = _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi16(v, 4), m));
}

// int8_block_scale of 16 packed scale bytes: (s & 0x7F) << 7 read as F16, times 128.
inline __m512 block_scales(const uint8_t* s) {
  __m256i h = _mm256_slli_epi16(_mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s))), 7);
  h = _mm256_and_si256(h, _mm256_set1_epi16(0x3F80));
  return _mm512_mul_ps(_mm512_cvtph_ps(h), _mm512_set1_ps(128.0f));
}

// Software prefetch distance of the generation GEMV, in groups of 256 columns (144 bytes a row).
constexpr int64_t kAhead = 8;

// One token, R rows streamed straight from the packed weights: y[r] for r < R.
template <int R>
void gemv_rows(const uint8_t* codes, const uint8_t* scales, int64_t G, const Int8Activations& xa, float* y, int64_t ystride) {
  const __m512i lut = e2m1_lut();
  float out[R];
  for (int r = 0; r < R; ++r) out[r] = 0.0f;
  for (int64_t g0 = 0; g0 < G; g0 += kInt8ChunkGroups) {
    const int64_t g1 = std::min(G, g0 + kInt8ChunkGroups);
    __m512 f[R];
    for (int r = 0; r < R; ++r) f[r] = _mm512_setzero_ps();
    for (int64_t g = g0; g < g1; ++g) {
      const int8_t* xg = xa.q.data() + g * 256;
      const __m512i x0 = _mm512_loadu_si512(xg), x1 = _mm512_loadu_si512(xg + 64);
      const __m512i x2 = _mm512_loadu_si512(xg + 128), x3 = _mm512_loadu_si512(xg + 192);
      const __m512i corr = _mm512_loadu_si512(xa.corr.data() + g * 16);
      const __m512 xs = _mm512_loadu_ps(xa.scale.data() + g * 16);
      for (int r = 0; r < R; ++r) {
        const uint8_t* p = codes + r * G * 128 + g * 128;
        // Each row is its own stream: ask for the bytes kAhead groups on before the core needs them
        // (the codes' two lines, and the line of 4 groups' scales), past the row end harmlessly.
        _mm_prefetch(reinterpret_cast<const char*>(p + kAhead * 128), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(p + kAhead * 128 + 64), _MM_HINT_T0);
        if ((g & 3) == 0) _mm_prefetch(reinterpret_cast<const char*>(scales + r * G * 16 + (g + kAhead) * 16), _MM_HINT_T0);
        __m512i w0, w1, w2, w3;
        decode_half(p, lut, w0, w1);
        decode_half(p + 64, lut, w2, w3);
        __m512i acc = _mm512_dpbusd_epi32(corr, w0, x0);
        acc = _mm512_dpbusd_epi32(acc, w1, x1);
        acc = _mm512_dpbusd_epi32(acc, w2, x2);
        acc = _mm512_dpbusd_epi32(acc, w3, x3);
        const __m512 prod = _mm512_mul_ps(block_scales(scales + r * G * 16 + g * 16), xs);
        f[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc), prod, f[r]);
      }
    }
    for (int r = 0; r < R; ++r) out[r] += hsum512(f[r]);
  }
  for (int r = 0; r < R; ++r) y[r * ystride] = out[r];
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
    // Per 64-byte slice the TT activation vectors stay in registers and each weight vector is
    // loaded once for TT dot products.
    for (int s = 0; s < 4; ++s) {
      __m512i xv[TT];
      for (int t = 0; t < TT; ++t) xv[t] = _mm512_load_si512(xq + t * ldx + g * 256 + 64 * s);
      for (int r = 0; r < R; ++r) {
        const __m512i wv = _mm512_load_si512(wp + r * kLd + g * 256 + 64 * s);
        for (int t = 0; t < TT; ++t) acc[r][t] = _mm512_dpbusd_epi32(acc[r][t], wv, xv[t]);
      }
    }
    for (int r = 0; r < R; ++r) {
      __m512 wsv = _mm512_loadu_ps(ws + r * (kLd / 16) + g * 16);
      for (int t = 0; t < TT; ++t)
        f[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][t]), _mm512_mul_ps(wsv, _mm512_loadu_ps(xs + t * lds + g * 16)), f[r][t]);
    }
  }
  for (int t = 0; t < TT; ++t)
    for (int r = 0; r < R; ++r) y[t * ldy + r] += hsum512(f[r][t]);
}

constexpr int kTileR = 4;
constexpr int kTileT = 3;

template <int R>
void micro_int8_rows(const uint8_t* wp, const float* ws, const int8_t* xq, int64_t ldx, const float* xs, const int32_t* xc,
                     int64_t lds, int64_t ng, int tt, float* y, int64_t ldy) {
  switch (tt) {
    case 1: micro_int8<R, 1>(wp, ws, xq, ldx, xs, xc, lds, ng, y, ldy); break;
    case 2: micro_int8<R, 2>(wp, ws, xq, ldx, xs, xc, lds, ng, y, ldy); break;
    default: micro_int8<R, 3>(wp, ws, xq, ldx, xs, xc, lds, ng, y, ldy); break;
  }
}

// Tokens per pass over a decoded panel (a multiple of kTileT): their activations for one chunk
// (96 × 16 groups × 384 bytes = 576 KiB) stay in L2 while every 4-row tile of the panel streams
// them, instead of all the prompt's tokens (1.5 MiB at 256 tokens) going round L2 once per tile.
constexpr int64_t kTokenBlock = 32 * kTileT;

// Many tokens: per kPanelRows rows × kInt8ChunkGroups groups the weights are decoded once into the
// scratch panel (bytes in Int8Activations order, scales as f32: 144 KiB, L2); per block of
// kTokenBlock tokens every kTileR-row tile of the panel (16 KiB, L1) streams the block's tokens
// past it, so each weight load feeds kTileT dot products and each activation load kTileR.
// Per (row, token) the chunks are still summed in order: the result does not depend on the blocking.
void gemm_int8(const Linear& w, const uint8_t* packed, const Int8Activations& xa, int64_t r0, int64_t r1, float* y, float* scratch) {
  const int64_t N = w.n, T = xa.T, G = xa.groups, ldx = G * 256, lds = G * 16;
  const uint8_t* scales = int8_layout::scales(packed, N, w.k);
  const __m512i lut = e2m1_lut();
  for (int64_t t = 0; t < T; ++t) std::fill(y + t * N + r0, y + t * N + r1, 0.0f);
  uint8_t* wp = reinterpret_cast<uint8_t*>(scratch);
  float* ws = scratch + kPanelRows * kLd / 4;
  for (int64_t g0 = 0; g0 < G; g0 += kInt8ChunkGroups) {
    const int64_t ng = std::min(kInt8ChunkGroups, G - g0);
    const int8_t* xq = xa.q.data() + g0 * 256;
    const float* xs = xa.scale.data() + g0 * 16;
    const int32_t* xc = xa.corr.data() + g0 * 16;
    for (int64_t pb = r0; pb < r1; pb += kPanelRows) {
      const int64_t prows = std::min(kPanelRows, r1 - pb);
      for (int64_t i = 0; i < prows; ++i)
        for (int64_t g = 0; g < ng; ++g) {
          const uint8_t* p = packed + (pb + i) * G * 128 + (g0 + g) * 128;
          uint8_t* o = wp + i * kLd + g * 256;
          __m512i a, b, c, d;
          decode_half(p, lut, a, b);
          decode_half(p + 64, lut, c, d);
          _mm512_store_si512(o, a);
          _mm512_store_si512(o + 64, b);
          _mm512_store_si512(o + 128, c);
          _mm512_store_si512(o + 192, d);
          _mm512_store_ps(ws + i * (kLd / 16) + g * 16, block_scales(scales + (pb + i) * G * 16 + (g0 + g) * 16));
        }
      for (int64_t tb = 0; tb < T; tb += kTokenBlock) {
        const int64_t te = std::min(T, tb + kTokenBlock);
        for (int64_t rb = 0; rb < prows; rb += kTileR) {
          const int64_t rows = std::min<int64_t>(kTileR, prows - rb);
          const uint8_t* wt = wp + rb * kLd;
          const float* wst = ws + rb * (kLd / 16);
          for (int64_t t0 = tb; t0 < te; t0 += kTileT) {
            const int tt = int(std::min<int64_t>(kTileT, te - t0));
            float* yt = y + t0 * N + pb + rb;
            if (rows == kTileR) {
              micro_int8_rows<kTileR>(wt, wst, xq + t0 * ldx, ldx, xs + t0 * lds, xc + t0 * lds, lds, ng, tt, yt, N);
              continue;
            }
            for (int64_t i = 0; i < rows; ++i)
              micro_int8_rows<1>(wt + i * kLd, wst + i * (kLd / 16), xq + t0 * ldx, ldx, xs + t0 * lds, xc + t0 * lds, lds, ng, tt,
                                 yt + i, N);
          }
        }
      }
    }
  }
}

}  // namespace

void rows_int8_avx512vnni(const Linear& w, const uint8_t* packed, const Int8Activations& xa, int64_t r0, int64_t r1, float* y,
                          float* scratch) {
  if (xa.T >= 2) {
    gemm_int8(w, packed, xa, r0, r1, y, scratch);
    return;
  }
  const int64_t G = xa.groups;
  const uint8_t* scales = int8_layout::scales(packed, w.n, w.k);
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) gemv_rows<4>(packed + r * G * 128, scales + r * G * 16, G, xa, y + r, 1);
  for (; r < r1; ++r) gemv_rows<1>(packed + r * G * 128, scales + r * G * 16, G, xa, y + r, 1);
}

}  // namespace fp4z::kernels
