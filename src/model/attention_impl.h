// The flash-attention task body, written once in plain loops and compiled per ISA file (included
// only by attention*.cpp, each compiling its own copy with its target flags; gcc vectorises the
// 16/32-wide inner loops).
#pragma once
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/half.h"
#include "model/attention.h"

namespace fp4z::kernels {
namespace {

// e^x for x <= 0 (Cephes expf: round x·log2(e) by the 1.5·2^23 trick, two-part ln 2, degree-6
// polynomial, 2^n through the exponent bits); below -87 it returns about 1e-38. Branch free so the
// callers' loops vectorise.
inline float exp_nonpositive(float x) {
  x = std::max(x, -87.0f);
  const float t = x * 1.44269504088896341f + 12582912.0f;
  const float n = t - 12582912.0f;
  const int32_t ni = std::bit_cast<int32_t>(t) - 0x4B400000;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.0f;
  return e * std::bit_cast<float>((ni + 127) << 23);
}

inline float cache_value(const float* f, const uint16_t* h, int64_t i) { return f ? f[i] : bf16_to_f32(h[i]); }

// Rows = (query token, head of the group); per row the running max m, sum l and output O[D].
void attend_impl(const AttentionArgs& a, int64_t g, int64_t t0, int64_t t1, float* scratch) {
  constexpr int64_t BK = kAttnKeys;
  const int64_t D = a.D, group = a.heads / a.kv_heads, qd = a.heads * D;
  const int64_t rows = (t1 - t0) * group;
  float* kt = scratch;             // [D][BK] keys of the tile, transposed
  float* vt = kt + D * BK;         // [BK][D]
  float* o = vt + BK * D;          // [rows][D]
  float* m = o + rows * D;         // [rows]
  float* l = m + rows;             // [rows]
  float* s = l + rows;             // [BK]
  std::fill(o, o + rows * D, 0.0f);
  std::fill(m, m + rows, -INFINITY);
  std::fill(l, l + rows, 0.0f);
  const int64_t n_keys = a.pos0 + t1;  // the last query token sees them all
  for (int64_t k0 = 0; k0 < n_keys; k0 += BK) {
    const int64_t nk = std::min(BK, n_keys - k0);
    for (int64_t j = 0; j < BK; ++j) {
      const int64_t base = (k0 + j) * a.kv_stride + g * D;
      if (j < nk) {
        for (int64_t d = 0; d < D; ++d) kt[d * BK + j] = cache_value(a.k, a.k16, base + d);
        for (int64_t d = 0; d < D; ++d) vt[j * D + d] = cache_value(a.v, a.v16, base + d);
      } else {
        for (int64_t d = 0; d < D; ++d) kt[d * BK + j] = 0.0f;
        for (int64_t d = 0; d < D; ++d) vt[j * D + d] = 0.0f;
      }
    }
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t t = t0 + r / group, h = g * group + r % group;
      const int64_t visible = std::min(nk, a.pos0 + t + 1 - k0);  // keys of this tile the row sees
      if (visible <= 0) continue;
      const float* qr = a.q + t * qd + h * D;
      float sc[BK];
      for (int64_t j = 0; j < BK; ++j) sc[j] = 0.0f;
      for (int64_t d = 0; d < D; ++d) {
        const float qv = qr[d];
        const float* kd = kt + d * BK;
        for (int64_t j = 0; j < BK; ++j) sc[j] += qv * kd[j];
      }
      float mx = m[r];
      for (int64_t j = 0; j < visible; ++j) mx = std::max(mx, sc[j] * a.scale);
      const float corr = exp_nonpositive(m[r] - mx);  // 0 on the first tile (m = -inf)
      float sum = 0.0f;
      for (int64_t j = 0; j < BK; ++j) {
        float p = exp_nonpositive(sc[j] * a.scale - mx);
        s[j] = j < visible ? p : 0.0f;
        sum += s[j];
      }
      l[r] = l[r] * corr + sum;
      m[r] = mx;
      float* orow = o + r * D;
      for (int64_t d = 0; d < D; ++d) orow[d] *= corr;
      for (int64_t j = 0; j < visible; ++j) {
        const float pj = s[j];
        const float* vj = vt + j * D;
        for (int64_t d = 0; d < D; ++d) orow[d] += pj * vj[d];
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
