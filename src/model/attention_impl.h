// The flash-attention task body, written once with GCC 16-lane vector types and compiled per ISA
// file (included only by attention*.cpp, each compiling its own copy with its target flags).
#pragma once
// The vector helpers are internal (anonymous namespace, inlined): their ABI never crosses files.
#pragma GCC diagnostic ignored "-Wpsabi"
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/half.h"
#include "model/attention.h"

namespace fp4z::kernels {
namespace {

// 16 floats as a GCC vector (a C-style cast between the two types reinterprets the bits): each ISA file compiles the same operations to its own registers (one
// zmm, two ymm, four xmm), and with -ffp-contract=off every ISA computes bit-identical values.
typedef float F16x __attribute__((vector_size(64)));
typedef int32_t I16x __attribute__((vector_size(64)));

inline F16x load16(const float* p) {
  F16x v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store16(float* p, F16x v) { std::memcpy(p, &v, sizeof v); }
inline F16x splat(float x) { return F16x{} + x; }
inline F16x vmax(F16x a, F16x b) { return a > b ? a : b; }
// Horizontal max and sum of 16 lanes by halving (a tree, no serial dependency chain).
inline float hmax16(F16x v) {
  v = vmax(v, __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7));
  v = vmax(v, __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11));
  v = vmax(v, __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13));
  v = vmax(v, __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14));
  return v[0];
}
inline float hsum16(F16x v) {
  v += __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
  v += __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
  v += __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
  v += __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
  return v[0];
}

// e^x for x <= 0 (Cephes expf: round x·log2(e) by the 1.5·2^23 trick, two-part ln 2, degree-6
// polynomial, 2^n through the exponent bits); below -87 it returns about 1e-38.
inline F16x exp_nonpositive(F16x x) {
  x = x < splat(-87.0f) ? splat(-87.0f) : x;
  const F16x t = x * 1.44269504088896341f + 12582912.0f;
  const F16x n = t - 12582912.0f;
  const I16x ni = (I16x)t - 0x4B400000;
  const F16x r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  F16x p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const F16x e = p * r * r + r + 1.0f;
  const I16x bits = (ni + 127) << 23;
  return e * (F16x)bits;
}

// Rows = (query token, head of the group); per row the running max m, sum l and output O[D].
void attend_impl(const AttentionArgs& a, int64_t g, int64_t t0, int64_t t1, float* scratch) {
  constexpr int64_t BK = kAttnKeys;  // two 16-lane vectors of scores
  constexpr int64_t kRowBlock = 4;   // query rows per pass over the key tile
  static_assert(BK == 32);
  const int64_t D = a.D, group = a.heads / a.kv_heads, qd = a.heads * D;
  const int64_t rows = (t1 - t0) * group;
  const bool wide = D % 16 == 0;
  float* kt = scratch;        // [D][BK] keys of the tile, transposed
  float* vt = kt + D * BK;    // [BK][D]
  float* o = vt + BK * D;     // [rows][D]
  float* m = o + rows * D;    // [rows]
  float* l = m + rows;        // [rows]
  float* s = l + rows;        // [BK]
  std::fill(o, o + rows * D, 0.0f);
  std::fill(m, m + rows, -INFINITY);
  std::fill(l, l + rows, 0.0f);
  const int64_t n_keys = a.pos0 + t1;  // the last query token sees them all
  const I16x iota = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  for (int64_t k0 = 0; k0 < n_keys; k0 += BK) {
    const int64_t nk = std::min(BK, n_keys - k0);
    for (int64_t j = 0; j < BK; ++j) {
      float* vrow = vt + j * D;
      if (j >= nk) {
        for (int64_t d = 0; d < D; ++d) kt[d * BK + j] = 0.0f;
        std::fill(vrow, vrow + D, 0.0f);
        continue;
      }
      const int64_t base = (k0 + j) * a.kv_stride + g * D;
      if (a.k) {
        for (int64_t d = 0; d < D; ++d) kt[d * BK + j] = a.k[base + d];
        std::memcpy(vrow, a.v + base, size_t(D) * sizeof(float));
      } else {
        for (int64_t d = 0; d < D; ++d) kt[d * BK + j] = bf16_to_f32(a.k16[base + d]);
        for (int64_t d = 0; d < D; ++d) vrow[d] = bf16_to_f32(a.v16[base + d]);
      }
    }
    // kRowBlock rows at a time share each key load; every row keeps its own two sums in d order.
    for (int64_t rb = 0; rb < rows; rb += kRowBlock) {
      const int64_t nr = std::min(kRowBlock, rows - rb);
      const float* qrow[kRowBlock];
      for (int64_t i = 0; i < kRowBlock; ++i) {
        const int64_t r = rb + std::min(i, nr - 1);  // a short block repeats its last row
        const int64_t t = t0 + r / group, h = g * group + r % group;
        qrow[i] = a.q + t * qd + h * D;
      }
      F16x s0[kRowBlock], s1[kRowBlock];
      for (int64_t i = 0; i < kRowBlock; ++i) s0[i] = s1[i] = F16x{};
      for (int64_t d = 0; d < D; ++d) {
        const F16x k0v = load16(kt + d * BK), k1v = load16(kt + d * BK + 16);
        for (int64_t i = 0; i < kRowBlock; ++i) {
          const F16x qv = splat(qrow[i][d]);
          s0[i] += qv * k0v;
          s1[i] += qv * k1v;
        }
      }
      for (int64_t i = 0; i < nr; ++i) {
        const int64_t r = rb + i, t = t0 + r / group;
        const int64_t visible = std::min(nk, a.pos0 + t + 1 - k0);  // keys of this tile the row sees
        if (visible <= 0) continue;
        const F16x sa = s0[i] * a.scale, sb = s1[i] * a.scale;
        const I16x vis = I16x{} + int32_t(visible), seen_a = iota < vis, seen_b = iota + 16 < vis;
        const float mx = std::max(m[r], hmax16(vmax(seen_a ? sa : splat(-INFINITY), seen_b ? sb : splat(-INFINITY))));
        const float corr = exp_nonpositive(splat(m[r] - mx))[0];  // 0 on the first tile (m = -inf)
        const F16x ea = seen_a ? exp_nonpositive(sa - mx) : F16x{}, eb = seen_b ? exp_nonpositive(sb - mx) : F16x{};
        store16(s, ea);
        store16(s + 16, eb);
        const float sum = hsum16(ea + eb);
        l[r] = l[r] * corr + sum;
        m[r] = mx;
        float* orow = o + r * D;
        int64_t d0 = 0;
        if (wide) {
          // Keys outer, 8 output vectors in registers: each output element still sums j in order.
          for (; d0 + 128 <= D; d0 += 128) {
            F16x acc[8];
            for (int v = 0; v < 8; ++v) acc[v] = load16(orow + d0 + 16 * v) * corr;
            for (int64_t j = 0; j < visible; ++j) {
              const float sj = s[j];
              const float* vj = vt + j * D + d0;
              for (int v = 0; v < 8; ++v) acc[v] += sj * load16(vj + 16 * v);
            }
            for (int v = 0; v < 8; ++v) store16(orow + d0 + 16 * v, acc[v]);
          }
          for (; d0 < D; d0 += 16) {
            F16x acc = load16(orow + d0) * corr;
            for (int64_t j = 0; j < visible; ++j) acc += s[j] * load16(vt + j * D + d0);
            store16(orow + d0, acc);
          }
        } else {
          for (int64_t d = 0; d < D; ++d) {
            float acc = orow[d] * corr;
            for (int64_t j = 0; j < visible; ++j) acc += s[j] * vt[j * D + d];
            orow[d] = acc;
          }
        }
      }
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = t0 + r / group, h = g * group + r % group;
    const float inv = 1.0f / l[r];
    float* dst = a.out + t * qd + h * D;
    for (int64_t d = 0; d < D; ++d) dst[d] = o[r * D + d] * inv;
  }
}

}  // namespace
}  // namespace fp4z::kernels
