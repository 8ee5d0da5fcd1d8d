// Global and block scale rules of the NVFP4 quantizers, and the seed report's entropy proxy.
#include "nvfp4/scales.h"

#include <cmath>
#include <algorithm>
#include <cstring>
#include <vector>

#include "nvfp4/codec.h"

namespace fp4z {

float round_to_source(float x, SourceRounding r) {
  if (r == SourceRounding::kF32) return x;
  uint32_t b;
  std::memcpy(&b, &x, 4);
  if ((b & 0x7FFFFFFFu) > 0x7F800000u) return x;
  b += 0x7FFFu + ((b >> 16) & 1u);
  b &= 0xFFFF0000u;
  float y;
  std::memcpy(&y, &b, 4);
  return y;
}

float absmax_global_scale(float amax, SourceRounding r) {
  if (!(amax > 0.0f)) return 1.0f;
  float inv = round_to_source(1.0f / amax, r);
  float gs = round_to_source(inv * 2688.0f, r);
  if (!std::isfinite(gs) || gs == 0.0f) return 1.0f;
  return gs;
}

uint8_t absmax_block_scale(float amax_b, float gs, SourceRounding r) {
  float q = round_to_source(amax_b / 6.0f, r);
  float s = gs * q;
  if (s > 448.0f) s = 448.0f;
  uint8_t b = e4m3_encode_rne(s);
  if ((b & 0x7F) == 0) b = 0x20;
  return b;
}

float seed_global_scale(float max_desired) {
  if (max_desired == 0.0f) return 1.0f;
  float inv = 1.0f / max_desired;
  return inv * 448.0f;
}

uint8_t seed_block_scale(float desired, float g) {
  float n = desired * g;
  // max(n, 0) then min(., 448), NaN-propagating like torch.clamp would; inputs are finite here.
  if (n < 0.0f) n = 0.0f;
  if (n > 448.0f) n = 448.0f;
  return e4m3_encode_rne(n);
}

EntropyProxy entropy_proxy(const uint8_t* bytes, size_t n) {
  EntropyProxy out;
  if (n == 0) return out;
  const size_t chunk = 32768;
  out.n_chunks = (n + chunk - 1) / chunk;
  double sum = 0, sum_sq = 0;
  std::vector<double> hs;
  hs.reserve(out.n_chunks);
  for (size_t c = 0; c < out.n_chunks; ++c) {
    const uint8_t* p = bytes + c * chunk;
    size_t len = std::min(chunk, n - c * chunk);
    uint32_t hist[2][256] = {};
    for (size_t i = 0; i < len; ++i) ++hist[i & 1][p[i]];
    double h[2] = {0, 0};
    for (int half = 0; half < 2; ++half) {
      size_t cnt = half == 0 ? (len + 1) / 2 : len / 2;
      if (cnt == 0) continue;
      for (int v = 0; v < 256; ++v) {
        if (!hist[half][v]) continue;
        double pr = double(hist[half][v]) / double(cnt);
        h[half] -= pr * std::log2(pr);
      }
    }
    double hc = (h[0] + h[1]) / 2;
    hs.push_back(hc);
    sum += hc;
  }
  out.mean_bits = sum / double(out.n_chunks);
  for (double h : hs) sum_sq += (h - out.mean_bits) * (h - out.mean_bits);
  out.std_bits = std::sqrt(sum_sq / double(out.n_chunks));
  return out;
}

}  // namespace fp4z
